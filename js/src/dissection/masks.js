// The selected unit's top images with its mask M_k overlaid (the DissectionGallery result).
import { array, h } from "../util.js";
import * as P from "../patches.js";

/** The masks of neuron `i` (or a message) in `el`. */
export function drawMasks(d, el, i) {
  const { model, index } = d;
  el.replaceChildren();
  el.dataset.neuron = i >= 0 ? index.id(i) : "";
  if (i < 0) {
    el.appendChild(h("div", { class: "nc-card-sub", text: "Select a unit to see its top images with the mask where it fires." }));
    return;
  }
  if (!d.sheets) {
    el.appendChild(h("div", { class: "nc-card-sub", text: "No masks: attach the dissection gallery (analyses.dissection_gallery) to see them." }));
    return;
  }
  const rows = array(model.get("mask_row"), "int32");
  const row = i < rows.length ? rows[i] : -1;
  el.appendChild(h("div", { class: "nc-masks-title", text: `${index.id(i)}: top images, mask outlined` }));
  if (row < 0) {
    el.appendChild(h("div", { class: "nc-card-sub", text: "This unit is not in the dissection gallery." }));
    return;
  }
  const ids = array(model.get("mask_ids"), "int32");
  const k = model.get("mask_k");
  const strip = h("div", { class: "nc-strip" });
  for (let r = 0; r < k; r++) {
    const id = ids[row * k + r];
    if (id < 0) continue;
    strip.appendChild(h("figure", { class: "nc-fig nc-mask" }, P.patch(d.sheets, row, r, d.px), h("figcaption", { text: `image ${id}` })));
  }
  if (!strip.childElementCount) strip.appendChild(h("div", { class: "nc-card-sub", text: "no top images" }));
  el.appendChild(strip);
}
