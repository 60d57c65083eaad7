// ExplanationView: the chosen explained image with a method's heatmap over it (opacity slider,
// method switch), the deletion and insertion curves with their AUCs, and the units that
// carried the prediction; a click on a unit selects its neuron in every linked view; the
// image's structured attention graph (`sag.js`) and its class's x-features (`xnn.js`). With an
// explainer in the kernel, images are explained on request (`request.js`: an "nc-explain"
// event on the view's root, from the Explorer's gallery) and the view is drawn again when
// the explained images change.
import { array, fillNotes, h, listen, message, neuronIndex, segmented, select, setTrait } from "../util.js";
import * as P from "../patches.js";
import { followTheme } from "../theme.js";
import { renderCurves } from "./curves.js";
import { drawOver, heatCanvas, imageCanvas } from "./heatmap.js";
import { followRequests } from "./request.js";
import { drawSag } from "./sag.js";
import { drawUnits, markUnits } from "./units.js";
import { drawXnn } from "./xnn.js";

const PX = 240;  // the image on the page

/** The name of class `k` among `names`. */
const className = (names, k) => (k >= 0 && k < names.length ? names[k] : k < 0 ? "?" : `class ${k}`);

/** The label of explained image `r` in the image selector. */
function imageLabel(model, names, r) {
  const name = (k) => className(names, k);
  const id = array(model.get("image_ids"), "int32")[r];
  const target = array(model.get("targets"), "int32")[r];
  const label = array(model.get("labels"), "int32")[r];
  const p = array(model.get("probabilities"), "float32")[r];
  return `image ${id}: ${name(target)} (${(100 * p).toFixed(0)}%)${label >= 0 ? `, label ${name(label)}` : ""}`;
}

/** Draw the explained images of view `e` into `el` (toolbar, image, curves, units); the chart
 * follows the theme of `view` (the view's element). */
async function drawExplained({ e, data, el, view, host, signal }) {
  const { model, state } = e;
  const ids = array(model.get("image_ids"), "int32");
  if (!ids.length) {
    const text = !model.get("explainable") ? "No explanation in this atlas."
      : host.offline ? "No image explained in this atlas: explaining needs the notebook's kernel."
        : "No image explained yet: click an exemplar to explain it.";
    el.appendChild(h("div", { class: "nc-message", text }));
    return;
  }
  const toolbar = h("div", { class: "nc-toolbar" });
  const canvas = h("canvas", { class: "nc-explanation-canvas" });
  const chart = h("div", { class: "nc-explanation-chart" });
  const aucs = h("div", { class: "nc-auc" });
  const units = h("div", { class: "nc-xunits" });
  const sag = h("div", { class: "nc-sag" });
  const xnn = h("div", { class: "nc-xnn" });
  el.append(toolbar, h("div", { class: "nc-explanation-body" },
    h("div", { class: "nc-explanation-figure" }, canvas),
    h("div", { class: "nc-explanation-curves" }, chart, aucs)), units,
  h("div", { class: "nc-explanation-extras" }, sag, xnn));
  const row = () => Math.max(0, ids.indexOf(model.get("image")));
  let image = null;  // the chosen image as a canvas

  function buildToolbar() {
    const names = data.get("class_names") || [];
    const images = select(Array.from(ids, (id, r) => ({ value: id, label: imageLabel(model, names, r) })),
      model.get("image"), (value) => setTrait(model, "image", Number(value)), "the explained image");
    images.classList.add("nc-explanation-image");
    const methods = (model.get("methods") || []).map((m) => [m, m, `the ${m} heatmap`]);
    const slider = h("input", { type: "range", min: 0, max: 1, step: 0.05, value: model.get("opacity"), class: "nc-opacity", title: "the heatmap's opacity" });
    slider.addEventListener("input", () => setTrait(model, "opacity", Number(slider.value)));
    toolbar.replaceChildren(h("span", { class: "nc-title", text: "Explanation" }), images,
      segmented(model, "method", methods, "method", { cls: "nc-methods", title: "the heatmap shown" }),
      h("label", { class: "nc-check" }, "opacity", slider));
  }
  const drawHeat = () => {
    const i = (model.get("methods") || []).indexOf(model.get("method"));
    const maps = model.get("heatmaps") || [];
    const values = i >= 0 && maps[i] ? array(maps[i], "float32") : null;
    const heat = values && heatCanvas(values, row() * values.shape[1] * values.shape[2], values.shape[1], values.shape[2]);
    drawOver(canvas, image, heat, model.get("opacity"), PX);
    canvas.dataset.method = model.get("method");
    canvas.dataset.opacity = String(model.get("opacity"));
  };
  const curves = renderCurves({ model, host, slot: chart, table: aucs, row, signal });
  const drawImage = () => {
    image = imageCanvas(array(model.get("images"), "uint8"), row());
    canvas.dataset.image = String(model.get("image"));
    drawHeat();
    drawUnits(e, units, row(), image);
    const id = model.get("image");
    drawSag(e, sag, id, image);
    drawXnn(e, xnn, id, array(model.get("targets"), "int32")[row()], (k) => className(data.get("class_names") || [], k));
    curves.update();
  };
  // only while these are the explained images (a new set draws everything again)
  const source = model.get("image_ids");
  const on = (target, events, fn) => listen(target, events, () => { if (model.get("image_ids") === source) fn(); }, signal);
  followTheme(view, (theme) => curves.style(theme), signal);
  on(model, ["change:image"], () => { buildToolbar(); drawImage(); });
  on(model, ["change:method"], () => { buildToolbar(); drawHeat(); curves.update(); });
  on(model, ["change:opacity"], drawHeat);
  on(state, ["change:neurons"], () => { markUnits(e, units); markUnits(e, xnn); });
  buildToolbar();
  drawImage();
  await curves.ready;
}

export async function renderExplanation({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const e = { model, state, index: neuronIndex(data), sheets: P.sheets(data) };
  const root = h("div", { class: "nc-view nc-explanation" });
  const shown = h("div", { class: "nc-explanation-shown" });
  const status = h("div", { class: "nc-explain-status" });
  const notes = h("div", { class: "nc-notes" });
  root.append(shown, status, notes);
  el.appendChild(root);
  const setHeight = () => { root.style.height = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();
  const setNotes = () => fillNotes(notes, model.get("notes") || []);
  setNotes();
  listen(model, ["change:height"], setHeight, signal);
  listen(model, ["change:notes"], setNotes, signal);

  const request = followRequests(model, host, status, signal);
  const asked = (event) => { if (request(event.detail.image)) event.preventDefault(); };
  root.addEventListener("nc-explain", asked);

  let drawing = null;  // aborts the drawn explanation's listeners
  signal?.addEventListener("abort", () => drawing?.abort());
  const draw = async () => {
    drawing?.abort();
    drawing = new AbortController();
    shown.replaceChildren();
    await drawExplained({ e, data, el: shown, view: el, host, signal: drawing.signal });
  };
  const redraw = () => draw().catch((err) => {
    shown.replaceChildren(message(`could not show the explanation: ${err && err.message ? err.message : err}`));
    console.error("notebookcarto explanation:", err);
  });
  listen(model, ["change:image_ids"], redraw, signal);
  await draw();
  root.dataset.ready = "1";
  const cleanup = () => root.remove();
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
