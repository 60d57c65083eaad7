// The toolbar: neurons or classes, colour, filter, snapshot slider or class-embedding layer,
// neuron search, pan or lasso, fit, clear. Every control sets a trait; the view follows the
// trait. Nothing in it changes size when its values change (the snapshot label has the width
// of the longest label), so the toolbar never wraps anew.
import { clear, h, segmented, select, setShared, setTrait } from "../util.js";
import { searchBox } from "./search.js";

const FILTERS = [{ value: "all", label: "show: all neurons" }, { value: "class", label: "show: the class's neurons" },
  { value: "clusters", label: "show: selected clusters" }];
const TOOLS = [["pan", "Pan", "drag to pan, wheel to zoom"], ["lasso", "Lasso", "drag to select (shift-drag works in pan mode too)"]];

function snapshotSlider(model) {
  const snaps = model.get("snapshot_labels") || [];
  if (!snaps.length) return null;
  const s = model.get("snapshot");
  const slider = h("input", {
    type: "range", min: 0, max: snaps.length, step: 1, value: s < 0 ? snaps.length : s,
    class: "nc-range nc-snapshot", title: "embedding snapshot",
  });
  const longest = Math.max(5, ...snaps.map((t) => String(t).length));
  const label = h("span", { class: "nc-label nc-snapshot-label", text: s < 0 ? "final" : snaps[s],
    style: { width: `${longest + 1}ch` } });
  slider.addEventListener("input", () => {
    const value = Number(slider.value);
    label.textContent = value >= snaps.length ? "final" : snaps[value];
  });
  slider.addEventListener("change", () => { const value = Number(slider.value); setTrait(model, "snapshot", value >= snaps.length ? -1 : value); });
  return h("span", { class: "nc-group", title: "embedding snapshots: how the embedding settled" },
    h("label", { class: "nc-label", text: "snapshot" }), slider, label);
}

function classLayer(model) {
  const layers = model.get("class_layers") || [];
  if (!layers.length) return null;
  const opts = layers.map((name, i) => ({ value: i, label: `layer: ${name}` }));
  const s = select(opts, model.get("class_layer"), (value) => setTrait(model, "class_layer", Number(value)), "layer of the class embedding");
  s.classList.add("nc-class-layer");
  return s;
}

export function buildToolbar(v) {
  const { model } = v;
  const { toolbar } = v.dom;
  const neurons = v.mode() === "neurons";
  clear(toolbar);
  toolbar.appendChild(h("span", { class: "nc-title", text: neurons ? "Neuron projection" : "Class embedding" }));
  toolbar.appendChild(segmented(model, "mode", [["neurons", "Neurons"], ["classes", "Classes"]], "mode"));
  if (neurons) {
    const opts = (model.get("color_options") || []).map((o) => ({ value: o, label: `colour: ${o}` }));
    const colour = select(opts, model.get("color_by"), (value) => setTrait(model, "color_by", value), "colour the points by");
    colour.classList.add("nc-colour");
    const filter = select(FILTERS, model.get("filter"), (value) => setTrait(model, "filter", value), "which neurons to show");
    filter.classList.add("nc-filter");
    toolbar.append(colour, filter);
    const slider = snapshotSlider(model);
    if (slider) toolbar.append(slider);
    toolbar.append(searchBox(v));
  } else {
    const layer = classLayer(model);
    if (layer) toolbar.append(layer);
  }
  toolbar.append(segmented(model, "tool", TOOLS, "tool"),
    h("button", { class: "nc-btn", text: "Fit", title: "reset zoom", on: { click: () => v.scatter.reset() } }),
    h("button", { class: "nc-btn", text: "Clear", title: "clear the selection", on: { click: () => setShared(v.state, { neurons: [] }, "clear") } }));
}

/** Pan and zoom, or lasso, as the `tool` trait says. */
export function applyTool(v) {
  v.scatter.set({ mouseMode: v.model.get("tool") === "lasso" ? "lasso" : "panZoom" });
}
