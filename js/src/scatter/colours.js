// What colours the points: layer, cluster, concept, class relevance (or accuracy for classes),
// in the theme's palettes, and the legend that says so (small, and folds away).
import { array, clear, h, ramp } from "../util.js";
import { relevance } from "../relevance.js";
import {
  CYCLE, DISTINCT_MAX, accuracyStops, distinctColours, noneColour, otherColour, relevanceStops,
} from "../palettes.js";

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

function byCluster(v, a, dark) {
  const { clusters, n } = v;
  const k = CYCLE.length;
  let top = -1;
  for (let i = 0; i < n; i++) {
    const c = clusters[i];
    a[i] = c >= 0 ? 1 + (c % k) : 0;
    if (c > top) top = c;
  }
  const count = distinct(clusters, n, top);
  const none = noneColour(dark);
  return { pointColor: [none, ...CYCLE], legend: { kind: "text", title: "cluster", items: [
    [CYCLE[0], count === 1 ? "1 cluster" : `${count} clusters${count > k ? " (colours repeat)" : ""}`],
    [none, "not in a cluster"]] } };
}

/** The most frequent concepts get distinct colours, the others one "other" colour. */
function byConcept(v, a, dark) {
  const { concepts, n } = v;
  const tally = new Map();
  for (let i = 0; i < n; i++) if (concepts[i] >= 0) tally.set(concepts[i], (tally.get(concepts[i]) || 0) + 1);
  const ranked = [...tally.entries()].sort((p, q) => q[1] - p[1] || p[0] - q[0]);
  const shown = ranked.length > DISTINCT_MAX ? ranked.slice(0, DISTINCT_MAX - 1) : ranked;
  const rest = ranked.slice(shown.length);
  const colours = distinctColours(shown.length, dark);
  const slot = new Map(shown.map(([c], j) => [c, j + 1]));
  const other = shown.length + 1;
  for (let i = 0; i < n; i++) a[i] = concepts[i] < 0 ? 0 : (slot.get(concepts[i]) ?? other);
  const name = (c) => v.conceptNames[c] ?? String(c);
  const items = shown.map(([c, m], j) => [colours[j], `${name(c)} (${m})`]);
  if (rest.length) {
    const names = rest.map(([c]) => name(c));
    const listed = names.slice(0, 3).join(", ") + (names.length > 3 ? ", …" : "");
    items.push([otherColour(dark), `${rest.length} more concepts: ${listed}`]);
  }
  items.push([noneColour(dark), "no concept"]);
  return { pointColor: [noneColour(dark), ...colours, otherColour(dark)],
           legend: { kind: "text", title: v.data.get("concept_source") || "concept", items } };
}

/** The colour of the v.n points now: {by, a, b (valueA, valueB per point), colorBy,
 * pointColor, legend}. */
export function colours(v) {
  const { model, n, clusters, concepts, index } = v;
  const dark = v.theme().dark;
  const by = model.get("color_by");
  const a = new Float32Array(n), b = new Float32Array(n);
  if (v.mode() === "classes") {
    const acc = array(model.get("class_accuracy"), "float32");
    if (acc.length === n) {
      for (let i = 0; i < n; i++) b[i] = Number.isNaN(acc[i]) ? 0 : acc[i];
      const stops = accuracyStops(dark);
      return { by: "accuracy", a, b, colorBy: "valueB", pointColor: ramp(stops, 32),
               legend: { kind: "ramp", title: "accuracy", stops, lo: "0%", hi: "100%" } };
    }
    return { by: "class", a, b, colorBy: "valueA", pointColor: distinctColours(1, dark), legend: null };
  }
  if (by === "cluster" && clusters.length === n) return { by, a, b, colorBy: "valueA", ...byCluster(v, a, dark) };
  if (by === "concept" && concepts.length === n) return { by, a, b, colorBy: "valueA", ...byConcept(v, a, dark) };
  if (by === "class relevance") {
    const c = v.state.get("cls");
    b.set(relevance(v.data, c, n));
    const name = v.classNames[c];
    const stops = relevanceStops(dark);
    return { by, a, b, colorBy: "valueB", pointColor: ramp(stops, 32),
             legend: name === undefined ? { kind: "text", items: [[stops[0], "select a class to colour by its relevance"]] }
               : { kind: "ramp", title: `relevance for ${name}`, stops, lo: "A = 0", hi: "layer max" } };
  }
  const layerColours = distinctColours(Math.max(index.layers.length, 1), dark);
  for (let i = 0; i < n; i++) a[i] = index.layerOf(i);
  return { by: "layer", a, b, colorBy: "valueA", pointColor: layerColours,
           legend: { kind: "text", title: "layer", items: index.layers.map((name, l) => [layerColours[l], name]) } };
}

/** The legend of colours() `spec` (hidden for none): a title that folds it (v.legendFolded
 * keeps the choice across colourings) over items that scroll inside a small box. */
export function drawLegend(v, spec) {
  const { legend } = v.dom;
  clear(legend);
  if (!spec) { legend.style.display = "none"; return; }
  legend.style.display = "";
  legend.classList.toggle("nc-collapsed", Boolean(v.legendFolded));
  const caret = h("span", { class: "nc-legend-caret", text: v.legendFolded ? "▸" : "▾" });
  const toggle = h("button", {
    class: "nc-legend-toggle", type: "button", title: v.legendFolded ? "show the legend" : "hide the legend",
    attrs: { "aria-expanded": String(!v.legendFolded) },
    on: { click: (event) => { event.stopPropagation(); v.legendFolded = !v.legendFolded; drawLegend(v, spec); } },
  }, caret, h("span", { class: "nc-legend-title", text: spec.title || "legend" }));
  const body = h("div", { class: "nc-legend-body" });
  legend.append(toggle, body);
  if (spec.kind === "ramp") {
    body.appendChild(h("div", { class: "nc-ramp", style: { background: `linear-gradient(90deg, ${spec.stops.join(",")})` } }));
    body.appendChild(h("div", { class: "nc-ramp-labels" }, h("span", { text: spec.lo }), h("span", { text: spec.hi })));
    return;
  }
  for (const [colour, label] of spec.items) {
    body.appendChild(h("div", { class: "nc-legend-item", title: label },
      h("span", { class: "nc-swatch", style: { background: colour } }), h("span", { class: "nc-legend-label", text: label })));
  }
}
