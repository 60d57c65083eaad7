// Neuron search, as in TensorBoard's projector: a box in the toolbar finds neurons by id, layer,
// concept, cluster or residual stream and lists them over the canvas; hover a result to ring it, click it to
// select it, Enter selects all matches, Escape closes the list.
import { clear, h, setShared, streams } from "../util.js";

const ORIGIN = "scatter-search";
const LISTED = 60;  // results listed (all of them are selected by Enter)

/**
 * The neurons `query` names, in index order: "cluster:3", "cluster 3" or "cluster:3@layer"
 * (a cluster's members, in one layer), "stream:layer2.0..layer2.2:3" (the members of that
 * residual stream), an exact id "layer:channel" (that neuron), else every neuron whose layer name
 * or concept name contains the text (case-insensitive), or whose id starts with it, and, for a
 * text with "..", every neuron whose stream name contains it (a layer's name alone still finds
 * that layer only, not the streams through it).
 */
export function findNeurons(v, query) {
  const { index, clusters, concepts, conceptNames } = v;
  const text = query.trim();
  if (!text) return [];
  const lower = text.toLowerCase();
  const out = [];
  const cluster = lower.match(/^cluster[\s:#]*(\d+)(?:@(.+))?$/);
  if (cluster && clusters.length === index.count) {
    const label = Number(cluster[1]);
    const layer = cluster[2] === undefined ? -1 : index.layers.findIndex((l) => l.toLowerCase() === cluster[2]);
    for (let i = 0; i < index.count; i++) {
      if (clusters[i] === label && (layer < 0 || index.layerOf(i) === layer)) out.push(i);
    }
    return out;
  }
  const { ids: streamIds, names: streamNames } = streams(v.data);
  const hasStreams = streamIds.length === index.count;
  const stream = lower.match(/^stream:\s*(.+)$/);
  if (stream && hasStreams) {
    const s = streamNames.findIndex((name) => name.toLowerCase() === stream[1]);
    for (let i = 0; s >= 0 && i < index.count; i++) if (streamIds[i] === s) out.push(i);
    return out;
  }
  const exact = index.index(text);
  if (exact >= 0) return [exact];
  const layers = index.layers.map((name) => name.toLowerCase().includes(lower));
  const named = conceptNames.map((name) => String(name).toLowerCase().includes(lower));
  const cut = lower.lastIndexOf(":");
  const prefix = cut > 0 ? index.layers.findIndex((l) => l.toLowerCase() === lower.slice(0, cut)) : -1;
  const channel = cut > 0 ? lower.slice(cut + 1) : "";
  const hasConcepts = concepts.length === index.count;
  const onStream = hasStreams && lower.includes("..")
    ? streamNames.map((name) => name.toLowerCase().includes(lower)) : [];
  for (let i = 0; i < index.count; i++) {
    const l = index.layerOf(i);
    if (layers[l] || (hasConcepts && concepts[i] >= 0 && named[concepts[i]])
        || (prefix === l && String(i - index.starts[l]).startsWith(channel))
        || (streamIds[i] >= 0 && onStream[streamIds[i]])) out.push(i);
  }
  return out;
}

function facts(v, i) {
  const parts = [v.index.layers[v.index.layerOf(i)]];
  if (v.clusters.length === v.n && v.clusters[i] >= 0) parts.push(`cluster ${v.clusters[i]}`);
  if (v.concepts.length === v.n && v.concepts[i] >= 0) parts.push(v.conceptNames[v.concepts[i]] ?? "");
  return parts.join(" · ");
}

/** The search box (for the toolbar); its results go into v.dom.results. */
export function searchBox(v) {
  const { state } = v;
  const { results } = v.dom;
  const input = h("input", {
    type: "search", class: "nc-search nc-neuron-search", placeholder: "find neurons: id, layer, concept, cluster:3",
    title: "find neurons by id (layer:channel), layer, concept, cluster (cluster:3) or residual stream (stream:layer2.0..layer2.2:3); Enter selects all matches",
    value: v.query || "", attrs: { "aria-label": "find neurons" },
  });
  let found = [];
  const close = () => { results.style.display = "none"; clear(results); };
  const pick = (ids) => {
    close();
    setShared(state, { neurons: ids, hover: [] }, ORIGIN);
  };
  const fill = () => {
    v.query = input.value;
    clear(results);
    if (!input.value.trim() || v.mode() !== "neurons") { close(); return; }
    found = findNeurons(v, input.value);
    results.style.display = "";
    if (!found.length) {
      results.appendChild(h("div", { class: "nc-search-none", text: `no neuron matches “${input.value.trim()}”` }));
      return;
    }
    results.appendChild(h("div", { class: "nc-search-head",
      text: `${found.length.toLocaleString("en-US")} neuron${found.length === 1 ? "" : "s"}${found.length > LISTED ? ` (showing ${LISTED})` : ""} · Enter selects ${found.length === 1 ? "it" : "all"}` }));
    for (const i of found.slice(0, LISTED)) {
      results.appendChild(h("button", {
        class: "nc-search-item", type: "button", dataset: { neuron: v.index.id(i) },
        on: {
          mousedown: (event) => event.preventDefault(),  // keep the focus in the box
          click: () => pick([i]),
          mouseenter: () => setShared(state, { hover: [i] }, ORIGIN),
          mouseleave: () => setShared(state, { hover: [] }, ORIGIN),
        },
      }, h("span", { class: "nc-search-id", text: v.index.id(i) }), h("span", { class: "nc-search-facts", text: facts(v, i) })));
    }
  };
  input.addEventListener("input", fill);
  input.addEventListener("focus", fill);
  input.addEventListener("blur", () => setTimeout(close, 150));
  input.addEventListener("keydown", (event) => {
    if (event.key === "Enter") { fill(); if (found.length) pick(found); }
    if (event.key === "Escape") { close(); input.blur(); }
  });
  return input;
}
