// The dissected units: best concept, category and IoU, sorted and filtered by the panel's
// traits; a click selects the unit's neuron in every linked view.
import { array, h, selected, setShared } from "../util.js";

const ORIGIN = "dissection";
const SHOWN = 400;  // rows drawn (the count says how many there are)

/** The units the traits ask for, in their order: neuron indices. */
export function units(d) {
  const { model, index } = d;
  const iou = array(model.get("unit_iou"), "float32");
  const detector = array(model.get("unit_detector"), "uint8");
  const category = array(model.get("unit_category"), "int32");
  const concept = array(model.get("unit_concept"), "int32");
  const concepts = model.get("concepts") || [];
  const layer = index.layers.indexOf(model.get("layer"));
  const cat = (model.get("categories") || []).indexOf(model.get("category"));
  const onlyDetectors = model.get("detectors_only");
  const out = [];
  for (let i = 0; i < iou.length; i++) {
    if (Number.isNaN(iou[i])) continue;
    if (onlyDetectors && !detector[i]) continue;
    if (layer >= 0 && index.layerOf(i) !== layer) continue;
    if (cat >= 0 && category[i] !== cat) continue;
    out.push(i);
  }
  const sort = model.get("sort");
  if (sort === "iou") out.sort((a, b) => iou[b] - iou[a] || a - b);
  else if (sort === "concept") {
    const name = (i) => (concept[i] >= 0 ? String(concepts[concept[i]]) : "\uffff");
    out.sort((a, b) => name(a).localeCompare(name(b)) || iou[b] - iou[a] || a - b);
  }
  return out;
}

/** The unit table of panel `d` in `el`. */
export function drawUnits(d, el, count) {
  const { model, index, state } = d;
  const iou = array(model.get("unit_iou"), "float32");
  const concept = array(model.get("unit_concept"), "int32");
  const category = array(model.get("unit_category"), "int32");
  const detector = array(model.get("unit_detector"), "uint8");
  const concepts = model.get("concepts") || [];
  const categories = model.get("categories") || [];
  const list = units(d);
  const chosen = new Set(selected(state));
  el.replaceChildren();
  count.textContent = `${list.length.toLocaleString("en-US")} unit${list.length === 1 ? "" : "s"}`;
  if (!list.length) {
    el.appendChild(h("div", { class: "nc-message", text: "No unit matches these filters." }));
    return;
  }
  for (const i of list.slice(0, SHOWN)) {
    const c = concept[i], g = category[i];
    const row = h("button", {
      class: `nc-unit-row ${chosen.has(i) ? "nc-on" : ""} ${detector[i] ? "" : "nc-weak"}`, type: "button",
      dataset: { neuron: index.id(i) },
      on: {
        click: () => setShared(state, { neurons: [i] }, ORIGIN),
        mouseenter: () => setShared(state, { hover: [i] }, ORIGIN),
        mouseleave: () => setShared(state, { hover: [] }, ORIGIN),
      },
    },
    h("span", { class: "nc-unit-id", text: index.id(i), title: index.id(i) }),
    h("span", { class: "nc-unit-concept", text: c >= 0 ? concepts[c] ?? "" : "–", title: c >= 0 ? concepts[c] ?? "" : "" }),
    h("span", { class: "nc-unit-category", text: g >= 0 ? categories[g] ?? "" : "" }),
    h("span", { class: "nc-unit-iou" },
      h("span", { class: "nc-iou-bar" }, h("span", { style: { width: `${Math.min(1, iou[i] / 0.5) * 100}%`, background: g >= 0 ? d.colours[g] : "" } })),
      h("span", { class: "nc-iou-value", text: iou[i].toFixed(2) })));
    el.appendChild(row);
  }
  if (list.length > SHOWN) el.appendChild(h("div", { class: "nc-card-sub nc-more", text: `and ${list.length - SHOWN} more (filter by layer or category)` }));
}
