// The graph's toolbar: which graph, the class picker, count / width / height sliders, fit.
import { clear, formatValue, h, select } from "../util.js";
import { currentGraph } from "./draw.js";
import { classPicker } from "./picker.js";
import { fit } from "./viewport.js";

function setTrait(model, name, value) {
  model.set(name, value);
  model.save_changes();
}

function slider(model, label, title, name, min, max, step, cls, showValue = true) {
  const value = h("span", { class: "nc-label nc-value", text: formatValue(model.get(name)) });
  const input = h("input", { type: "range", min, max, step, value: model.get(name), class: `nc-range ${cls}`, title });
  input.addEventListener("input", () => {
    value.textContent = formatValue(Number(input.value));
    setTrait(model, name, Number(input.value));
  });
  return h("span", { class: "nc-group", title }, h("label", { class: "nc-label", text: label }), input, showValue ? value : null);
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
  const { graph } = currentGraph(g);
  const maxCount = graph ? Math.max(1, ...graph.nodes.map((n) => n.count)) : 1;
  toolbar.append(slider(model, "count ≥", "hide nodes with a smaller count", "min_count", 0, maxCount, maxCount > 50 ? 1 : maxCount / 50, "nc-min-count"),
    slider(model, "width", "spread the layout sideways", "x_scale", 0.4, 3, 0.1, "nc-x-scale nc-small", false),
    slider(model, "height", "spread the layers apart", "y_scale", 0.4, 3, 0.1, "nc-y-scale nc-small", false),
    h("button", { class: "nc-btn", text: "Fit", title: "fit the graph", on: { click: () => fit(g) } }));
}
