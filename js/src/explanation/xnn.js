// The x-features (XNN) of the chosen image's target class: per x-feature its heatmap over the
// image (the chosen one when the XNN shows it, else the XNN's first shown image) and its
// nearest neurons with their weights (a click selects the neuron in every linked view); the
// class's faithfulness R².
import { array, formatValue, h, selected, setShared } from "../util.js";
import { drawOver, heatCanvas, imageCanvas } from "./heatmap.js";

const ORIGIN = "explanation";
const PX = 64;

/** The x-features of class `target` over image `imageId` into `el`; nothing when the atlas
 * has no XNN, a note when this class has none. `className` names a class. */
export function drawXnn(e, el, imageId, target, className) {
  const { model, state, index } = e;
  el.replaceChildren();
  const classes = array(model.get("xnn_classes"), "int32");
  if (!classes.length) return;
  el.appendChild(h("div", { class: "nc-panel-title", text: `x-features of ${model.get("xnn_layer")}` }));
  const c = classes.indexOf(target);
  if (c < 0) {
    el.appendChild(h("div", { class: "nc-xnn-none", text: `No x-features for class ${className(target)}.` }));
    return;
  }
  const ids = array(model.get("xnn_image_ids"), "int32");
  const j = Math.max(0, ids.indexOf(imageId));
  const maps = array(model.get("xnn_heatmaps"), "float32");
  const [, n, k, mh, mw] = maps.shape;
  const neurons = array(model.get("xnn_neurons"), "int32");
  const weights = array(model.get("xnn_weights"), "float32");
  const labels = (model.get("xnn_labels") || [])[c] || [];
  const t = neurons.shape[2];
  const r2 = array(model.get("xnn_r2"), "float32")[c];
  const over = ids[j] === imageId ? `image ${imageId}` : `image ${ids[j]} (the XNN does not show image ${imageId})`;
  el.appendChild(h("div", { class: "nc-xnn-head", text: `class ${className(target)}, over ${over}; faithfulness R² ${r2.toFixed(3)}` }));
  const image = imageCanvas(array(model.get("xnn_images"), "uint8"), j);
  const chosen = new Set(selected(state));
  for (let f = 0; f < k; f++) {
    const map = h("canvas", { class: "nc-xnn-map", dataset: { feature: f } });
    drawOver(map, image, heatCanvas(maps, ((c * n + j) * k + f) * mh * mw, mh, mw), 0.75, PX);
    const list = h("div", { class: "nc-xnn-neurons" });
    for (let r = 0; r < t; r++) {
      const at = (c * k + f) * t + r;
      const i = neurons[at];
      if (i < 0) continue;  // a neuron the atlas lacks
      const id = index.id(i);
      const label = (labels[f] || [])[r] || "";
      list.appendChild(h("button", {
        class: `nc-xnn-neuron${chosen.has(i) ? " nc-on" : ""}`, type: "button", dataset: { neuron: id },
        title: `${id}: decoder weight ${formatValue(weights[at])}`,
        on: { click: () => setShared(state, { neurons: [i] }, ORIGIN) },
      }, h("span", { class: "nc-unit-id", text: id }),
      h("span", { class: "nc-xnn-weight", text: formatValue(weights[at]) }),
      h("span", { class: "nc-unit-concept", text: label || "–" })));
    }
    el.appendChild(h("div", { class: "nc-xnn-feature", dataset: { feature: f } },
      map, h("span", { class: "nc-xnn-name", text: `x${f + 1}` }), list));
  }
}
