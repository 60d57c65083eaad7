// The chosen image's top units: example patch, activation map over the image, neuron, label,
// cluster name, share of the mask covered and contribution; a click selects the neuron in
// every linked view.
import { array, formatValue, h, pct, selected, setShared } from "../util.js";
import * as P from "../patches.js";
import { drawOver, heatCanvas } from "./heatmap.js";

const ORIGIN = "explanation";
const PX = 40;

/** The unit rows of image `row` of view `e` into `el`. */
export function drawUnits(e, el, row, image) {
  const { model, state, index, sheets } = e;
  const neurons = array(model.get("unit_neurons"), "int32");
  el.replaceChildren();
  if (!neurons.length) return;
  const k = neurons.shape[1];
  const contributions = array(model.get("unit_contributions"), "float32");
  const coverage = array(model.get("unit_coverage"), "float32");
  const maps = array(model.get("unit_maps"), "float32");
  const labels = (model.get("unit_labels") || [])[row] || [];
  const clusters = (model.get("unit_cluster_labels") || [])[row] || [];
  const chosen = new Set(selected(state));
  const of = model.get("coverage_of");
  el.appendChild(h("div", { class: "nc-xunit nc-xunit-head" },
    h("span", { text: "patch" }), h("span", { text: "map" }), h("span", { text: `unit of ${model.get("unit_layer")}` }),
    h("span", { text: "label" }), h("span", { text: "cluster" }),
    h("span", { text: of ? `share of ${of}` : "share of mask", title: "how much of the mask's saliency falls in the unit's region" }),
    h("span", { text: "contribution" })));
  for (let j = 0; j < k; j++) {
    const at = row * k + j;
    const i = neurons[at];
    if (i < 0) continue;
    const map = h("canvas", { class: "nc-xunit-map" });
    if (maps.length) {
      const [, , mh, mw] = maps.shape;
      drawOver(map, image, heatCanvas(maps, at * mh * mw, mh, mw), 0.75, PX);
    }
    const id = index.id(i);
    const share = coverage[at];
    el.appendChild(h("button", {
      class: `nc-xunit${chosen.has(i) ? " nc-on" : ""}`, type: "button", dataset: { neuron: id },
      on: {
        click: () => setShared(state, { neurons: [i] }, ORIGIN),
        mouseenter: () => setShared(state, { hover: [i] }, ORIGIN),
        mouseleave: () => setShared(state, { hover: [] }, ORIGIN),
      },
    },
    sheets ? P.patch(sheets, i, 0, PX) : h("span", { class: "nc-xunit-none", text: "–" }),
    map,
    h("span", { class: "nc-unit-id", text: id, title: id }),
    h("span", { class: "nc-unit-concept", text: labels[j] || "–", title: labels[j] || "" }),
    h("span", { class: "nc-unit-category", text: clusters[j] || "–", title: clusters[j] || "" }),
    h("span", { class: "nc-unit-iou" },
      h("span", { class: "nc-iou-bar" }, h("span", { style: { width: `${Number.isNaN(share) ? 0 : share * 100}%` } })),
      h("span", { class: "nc-iou-value", text: pct(share) })),
    h("span", { class: "nc-xunit-value", text: formatValue(contributions[at]) })));
  }
}

/** Mark the buttons of the selected neurons in `el` (the units, the x-features' neurons). */
export function markUnits(e, el) {
  const chosen = new Set(selected(e.state).map((i) => e.index.id(i)));
  for (const row of el.querySelectorAll("button[data-neuron]")) row.classList.toggle("nc-on", chosen.has(row.dataset.neuron));
}
