// The graph's toolbar: which graph, the class picker, patches or feature visualisations on the
// tiles (when the atlas has them), count / width / height sliders, fit all, back to the
// readable view, and all nodes or the default view's (when it leaves some out).
import { clear, formatCount, h, segmented, select, setTrait } from "../util.js";
import { currentGraph } from "./draw.js";
import { hasHidden } from "./layout.js";
import { classPicker } from "./picker.js";
import { fit, resetView } from "./viewport.js";

function slider(model, label, title, name, min, max, step, cls, showValue = true) {
  const value = h("span", { class: "nc-label nc-value", text: formatCount(model.get(name)) });
  const input = h("input", { type: "range", min, max, step, value: model.get(name), class: `nc-range ${cls}`, title });
  input.addEventListener("input", () => {
    value.textContent = formatCount(Number(input.value));
    setTrait(model, name, Number(input.value));
  });
  return h("span", { class: "nc-group", title }, h("label", { class: "nc-label", text: label }), input, showValue ? value : null);
}

const TILE_OPTIONS = [["patches", "patches"], ["featvis", "feature vis."]];

/** "all nodes": every node and edge the graph keeps, not only the shown ones (the `show_all`
 * trait); beside it, how many nodes are drawn (`build` fills it in). Only for graphs with
 * nodes or edges left out of the default view. */
function allNodes(g, graph) {
  if (!hasHidden(graph)) return null;
  const on = g.model.get("show_all");
  g.dom.count = h("span", { class: "nc-label nc-shown-count" });
  return h("span", { class: "nc-group", title: "the default view leaves out the lighter nodes and edges" },
    h("button", { class: `nc-btn nc-all-nodes${on ? " nc-on" : ""}`, text: "all nodes",
      attrs: { "aria-pressed": on }, on: { click: () => setTrait(g.model, "show_all", !on) } }),
    g.dom.count);
}

export function buildToolbar(g) {
  const { model } = g;
  const { toolbar } = g.dom;
  clear(toolbar);
  toolbar.appendChild(h("span", { class: "nc-title", text: model.get("kind") === "cluster" ? "Cluster graph" : "Attribution graph" }));
  const kinds = model.get("kinds") || [];
  if (kinds.length > 1) {
    toolbar.appendChild(select(kinds.map((k) => ({ value: k, label: k })), model.get("kind"), (value) => setTrait(model, "kind", value), "which graph"));
  }
  if (g.classNames.length) toolbar.appendChild(classPicker(g));
  if (g.visuals) toolbar.appendChild(segmented(model, "tiles", TILE_OPTIONS, "tiles", { cls: "nc-tiles", title: "what the nodes show" }));
  const { graph } = currentGraph(g);
  g.dom.count = null;
  const counts = graph ? graph.nodes.map((n) => n.count) : [];
  const maxCount = Math.max(1, ...counts);
  // counts of images are whole numbers (cluster graphs' mean counts may not be)
  const whole = counts.every((c) => Number.isInteger(c)) || maxCount >= 20;
  toolbar.append(slider(model, "count ≥", "hide nodes with a smaller count", "min_count", 0,
    whole ? Math.ceil(maxCount) : maxCount, whole ? 1 : 0.1, "nc-min-count"),
    slider(model, "width", "spread the layout sideways", "x_scale", 0.4, 3, 0.1, "nc-x-scale nc-small", false),
    slider(model, "height", "spread the layers apart", "y_scale", 0.4, 3, 0.1, "nc-y-scale nc-small", false),
    h("span", { class: "nc-seg" },
      h("button", { class: "nc-btn nc-fit", text: "Fit", title: "show all of the graph", on: { click: () => fit(g) } }),
      h("button", { class: "nc-btn nc-reset", text: "1:1", title: "back to the readable view (tiles at full size, deepest layers first)", on: { click: () => resetView(g) } })));
  const all = graph && allNodes(g, graph);
  if (all) toolbar.append(all);
}
