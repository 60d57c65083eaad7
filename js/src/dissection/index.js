// DissectionPanel: Network Dissection's detectors per layer and category, the units with their
// concepts and IoU, and the masks of the selected unit; linked through the shared selection.
import { fillNotes, h, listen, neuronIndex, scrollWithin, select, selected } from "../util.js";
import * as P from "../patches.js";
import { distinctColours } from "../palettes.js";
import { followTheme } from "../theme.js";
import { drawMasks } from "./masks.js";
import { drawSummary } from "./summary.js";
import { drawUnits } from "./units.js";

const SORTS = [{ value: "iou", label: "sort: IoU" }, { value: "concept", label: "sort: concept" }, { value: "unit", label: "sort: unit" }];

function setTraits(model, values) {
  for (const [name, value] of Object.entries(values)) model.set(name, value);
  model.save_changes();
}

export async function renderDissection({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const d = {
    model, state, data, index: neuronIndex(data), colours: [], px: 64,
    sheets: P.sheetSet({ k: model.get("mask_k"), size: model.get("mask_size"), rows: model.get("mask_rows"),
                         format: model.get("mask_format"), list: model.get("mask_sheets") }),
    filter: (values) => setTraits(model, values),
  };
  d.px = Math.max(48, Math.min(80, model.get("mask_size") || 64));
  const root = h("div", { class: "nc-view nc-dissection" });
  const toolbar = h("div", { class: "nc-toolbar" });
  const summary = h("div", { class: "nc-dissection-summary" });
  const count = h("span", { class: "nc-count" });
  const list = h("div", { class: "nc-unit-list" });
  const masks = h("div", { class: "nc-masks" });
  const notes = h("div", { class: "nc-notes" });
  root.append(toolbar, h("div", { class: "nc-dissection-body" }, summary,
    h("div", { class: "nc-dissection-units" }, list, masks)), notes);
  el.appendChild(root);
  const setHeight = () => { root.style.height = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();
  fillNotes(notes, model.get("notes") || []);

  function buildToolbar() {
    const layers = model.get("layers") || [];
    const categories = model.get("categories") || [];
    const layer = select([{ value: "", label: "all layers" }, ...layers.map((l) => ({ value: l, label: l }))],
      model.get("layer"), (value) => setTraits(model, { layer: value }), "units of one layer");
    layer.classList.add("nc-unit-layer");
    const category = select([{ value: "", label: "all categories" }, ...categories.map((c) => ({ value: c, label: c }))],
      model.get("category"), (value) => setTraits(model, { category: value }), "units whose best concept is of one category");
    category.classList.add("nc-unit-category-filter");
    const sort = select(SORTS, model.get("sort"), (value) => setTraits(model, { sort: value }), "sort the units");
    sort.classList.add("nc-unit-sort");
    const only = h("input", { type: "checkbox", checked: model.get("detectors_only"), class: "nc-detectors-only" });
    only.addEventListener("change", () => setTraits(model, { detectors_only: only.checked }));
    toolbar.replaceChildren(h("span", { class: "nc-title", text: "Network dissection" }), layer, category, sort,
      h("label", { class: "nc-check", title: `only units whose best IoU is above ${model.get("threshold")}` }, only, "detectors only"), count);
  }

  const focus = () => {
    const chosen = selected(state);
    const hovered = state.get("hover") || [];
    return chosen.length ? chosen[0] : hovered.length && state.get("origin") !== "dissection" ? hovered[0] : -1;
  };
  const render = () => {
    if (!(model.get("layers") || []).length) {
      summary.replaceChildren(h("div", { class: "nc-message", text: "No dissection in this atlas." }));
      list.replaceChildren();
      masks.replaceChildren();
      return;
    }
    drawSummary(d, summary);
    drawUnits(d, list, count);
    drawMasks(d, masks, focus());
  };
  followTheme(el, (theme) => {
    d.colours = distinctColours(Math.max((model.get("categories") || []).length, 1), theme.dark);
    if (root.isConnected) render();
  }, signal);

  listen(model, ["change:layer", "change:category", "change:sort", "change:detectors_only"], () => { buildToolbar(); render(); }, signal);
  listen(model, ["change:height"], setHeight, signal);
  listen(state, ["change:neurons"], () => {
    drawUnits(d, list, count);
    drawMasks(d, masks, focus());
    scrollWithin(list, list.querySelector(".nc-on"));
  }, signal);
  listen(state, ["change:hover"], () => { if (!selected(state).length) drawMasks(d, masks, focus()); }, signal);
  buildToolbar();
  render();
  const cleanup = () => root.remove();
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
