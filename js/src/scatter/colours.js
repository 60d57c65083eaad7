// What colours the points: layer, cluster, concept, class relevance (or accuracy for classes),
// and the legend that says so.
import { CATEGORICAL, DEPTH_STOPS, HEAT_STOPS, NONE_COLOR, array, clear, h, ramp } from "../util.js";

const ACCURACY_STOPS = ["#e03131", "#f59f00", "#94d82d", "#2f9e44"];

/** How many distinct non-negative labels the first n of `labels` hold (max label `top`). */
function distinct(labels, n, top) {
  if (top < 0) return 0;
  if (top >= 1 << 24) return new Set(Array.from(labels.subarray(0, n)).filter((c) => c >= 0)).size;
  const seen = new Uint8Array(top + 1);
  let count = 0;
  for (let i = 0; i < n; i++) {
    const c = labels[i];
    if (c >= 0 && !seen[c]) { seen[c] = 1; count++; }
  }
  return count;
}

/** The relevance (Summit's A, scaled per layer) of every neuron for class c. */
export function relevance(data, c, n) {
  const out = new Float32Array(n);
  const ptr = array(data.get("rel_indptr"), "uint32");
  if (c < 0 || c + 1 >= ptr.length) return out;
  const index = array(data.get("rel_index"), "uint32"), value = array(data.get("rel_value"), "float32");
  for (let j = ptr[c]; j < ptr[c + 1]; j++) out[index[j]] = value[j];
  return out;
}

/** The colour of the v.n points now: {a, b (valueA, valueB per point), colorBy, pointColor,
 * legend}. */
export function colours(v) {
  const { model, n, clusters, concepts, index } = v;
  const by = model.get("color_by");
  const a = new Float32Array(n), b = new Float32Array(n);
  if (v.mode() === "classes") {
    const acc = array(model.get("class_accuracy"), "float32");
    if (acc.length === n) {
      for (let i = 0; i < n; i++) b[i] = Number.isNaN(acc[i]) ? 0 : acc[i];
      return { a, b, colorBy: "valueB", pointColor: ramp(ACCURACY_STOPS, 32),
               legend: { kind: "ramp", title: "accuracy", stops: ACCURACY_STOPS, lo: "0%", hi: "100%" } };
    }
    return { a, b, colorBy: "valueA", pointColor: [CATEGORICAL[0]], legend: null };
  }
  if (by === "cluster" && clusters.length === n) {
    const k = CATEGORICAL.length;
    let top = -1;
    for (let i = 0; i < n; i++) {
      const c = clusters[i];
      a[i] = c >= 0 ? 1 + (c % k) : 0;
      if (c > top) top = c;
    }
    const count = distinct(clusters, n, top);
    return { a, b, colorBy: "valueA", pointColor: [NONE_COLOR, ...CATEGORICAL],
             legend: { kind: "text", items: [[CATEGORICAL[0], count === 1 ? "1 cluster" : `${count} clusters${count > CATEGORICAL.length ? " (colours repeat)" : ""}`], [NONE_COLOR, "not in a cluster"]] } };
  }
  if (by === "concept" && concepts.length === n) {
    const tally = new Map();
    for (let i = 0; i < n; i++) {
      const c = concepts[i];
      a[i] = c >= 0 ? 1 + (c % CATEGORICAL.length) : 0;
      if (c >= 0) tally.set(c, (tally.get(c) || 0) + 1);
    }
    const top = [...tally.entries()].sort((p, q) => q[1] - p[1]).slice(0, 10);
    const items = top.map(([c, m]) => [CATEGORICAL[c % CATEGORICAL.length], `${v.conceptNames[c] ?? c} (${m})`]);
    items.push([NONE_COLOR, "no concept"]);
    return { a, b, colorBy: "valueA", pointColor: [NONE_COLOR, ...CATEGORICAL],
             legend: { kind: "text", title: v.data.get("concept_source") || "concept", items } };
  }
  if (by === "class relevance") {
    const c = v.state.get("cls");
    b.set(relevance(v.data, c, n));
    const name = v.classNames[c];
    return { a, b, colorBy: "valueB", pointColor: ramp(HEAT_STOPS, 32),
             legend: name === undefined ? { kind: "text", items: [[NONE_COLOR, "select a class to colour by its relevance"]] }
               : { kind: "ramp", title: `relevance for ${name}`, stops: ramp(HEAT_STOPS, 5), lo: "A = 0", hi: "layer max" } };
  }
  const layerColours = ramp(DEPTH_STOPS, Math.max(index.layers.length, 1));
  for (let i = 0; i < n; i++) a[i] = index.layerOf(i);
  return { a, b, colorBy: "valueA", pointColor: layerColours,
           legend: { kind: "text", items: index.layers.map((name, l) => [layerColours[l], name]) } };
}

/** The legend of colours() `spec` (hidden for none). */
export function drawLegend(v, spec) {
  const { legend } = v.dom;
  clear(legend);
  if (!spec) { legend.style.display = "none"; return; }
  legend.style.display = "";
  if (spec.title) legend.appendChild(h("div", { class: "nc-legend-title", text: spec.title }));
  if (spec.kind === "ramp") {
    legend.appendChild(h("div", { class: "nc-ramp", style: { background: `linear-gradient(90deg, ${spec.stops.join(",")})` } }));
    legend.appendChild(h("div", { class: "nc-ramp-labels" }, h("span", { text: spec.lo }), h("span", { text: spec.hi })));
    return;
  }
  for (const [colour, label] of spec.items) {
    legend.appendChild(h("div", { class: "nc-legend-item" },
      h("span", { class: "nc-swatch", style: { background: colour } }), h("span", { text: label })));
  }
}
