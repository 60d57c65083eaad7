// The node card: a neuron's patches, or a cluster's members with theirs, beside the node's
// feature visualisation when the atlas has one, and the node's residual stream; pinned (on click) it lists the node's top-3
// inputs, which select their neurons.
import { clear, formatCount, formatValue, h, setShared, streams } from "../util.js";
import * as P from "../patches.js";

const ORIGIN = "graph";

/** The neuron indices of a node (a neuron, or a cluster's members). */
export function members(g, node) {
  return node.members.map((m) => g.index.index(m)).filter((i) => i >= 0);
}

/**
 * The label of a node from per-neuron `labels` (indices of `names`, -1 for none): its neuron's,
 * or the one most of a cluster's members have, with how many; "" for none.
 */
function nodeLabel(g, ids, labels, names) {
  if (labels.length !== g.index.count) return "";
  const tally = new Map();
  for (const i of ids) if (labels[i] >= 0) tally.set(labels[i], (tally.get(labels[i]) || 0) + 1);
  let best = -1, most = 0;
  for (const [c, m] of tally) if (m > most) { best = c; most = m; }
  if (best < 0) return "";
  const name = names[best] ?? "";
  return ids.length > 1 ? `${name} (${most} of ${ids.length})` : name;
}

/** The concept of a node: its neuron's, or the one most of a cluster's members have. */
export function nodeConcept(g, ids) {
  return nodeLabel(g, ids, g.concepts, g.conceptNames);
}

/** The residual stream of a node: its neuron's, or the one most of a cluster's members are on. */
function nodeStream(g, ids) {
  const { ids: labels, names } = streams(g.data);
  return nodeLabel(g, ids, labels, names);
}

function patches(g, ids) {
  const { sheets } = g;
  if (ids.length === 1) {
    if (!sheets) return null;
    const grid = h("div", { class: "nc-grid", style: { gridTemplateColumns: "repeat(5, 40px)" } });
    for (let r = 0; r < Math.min(10, P.count(sheets, ids[0])); r++) grid.appendChild(P.patch(sheets, ids[0], r, 40));
    return grid;
  }
  const list = h("div", { class: "nc-members" });
  for (const i of ids.slice(0, 8)) {
    const row = h("div", { class: "nc-member" }, h("span", { class: "nc-member-id", text: g.index.id(i) }));
    if (sheets) for (let r = 0; r < Math.min(4, P.count(sheets, i)); r++) row.appendChild(P.patch(sheets, i, r, 30));
    list.appendChild(row);
  }
  if (ids.length > 8) list.appendChild(h("div", { class: "nc-card-sub", text: `and ${ids.length - 8} more` }));
  return list;
}

function topInputs(g, node) {
  const row = h("div", { class: "nc-inputs" });
  for (const input of node.top_inputs.slice(0, 3)) {
    // a neuron id, or the id of another node of this graph (e.g. a cluster node)
    const other = g.placed.get(input);
    const ids = other ? members(g, other.node) : [g.index.index(input)].filter((j) => j >= 0);
    const chip = h("button", { class: "nc-chip", title: input,
      on: { click: () => { if (ids.length) setShared(g.state, { neurons: ids }, ORIGIN); } } });
    if (g.sheets && ids.length) chip.appendChild(P.patch(g.sheets, ids[0], 0, 28));
    chip.appendChild(h("span", { text: input }));
    row.appendChild(chip);
  }
  return row;
}

/** Show the card of node `id` (null: hide it), on the side of the view away from the node. */
export function showCard(g, id) {
  const { card, viewport } = g.dom;
  clear(card);
  const p = id === null ? undefined : g.placed.get(id);
  if (!p) { card.style.display = "none"; return; }
  const node = p.node;
  const ids = members(g, node);
  card.style.display = "";
  const screenX = g.view.x + p.x * g.view.k;
  const onLeft = screenX > (viewport.clientWidth || 0) / 2;
  card.style.left = onLeft ? "8px" : "auto";
  card.style.right = onLeft ? "auto" : "8px";
  const pinned = id === g.pinned;
  card.classList.toggle("nc-pinned", pinned);
  card.appendChild(h("div", { class: "nc-card-title", text: ids.length > 1 ? `${node.id} · ${ids.length} neurons` : node.id }));
  const mean = ids.length > 1 && !Number.isInteger(node.count);
  const facts = [node.layer, `${mean ? "mean count" : "count"} ${formatCount(node.count)}`];
  if (node.pagerank) facts.push(`PageRank ${formatValue(node.pagerank)}`);
  card.appendChild(h("div", { class: "nc-card-sub", text: facts.join(" · ") }));
  const concept = nodeConcept(g, ids);
  if (concept) card.appendChild(h("div", { class: "nc-card-sub nc-card-concept", text: `${g.conceptSource || "concept"}: ${concept}` }));
  const stream = nodeStream(g, ids);
  if (stream) card.appendChild(h("div", { class: "nc-card-sub nc-card-stream", text: `stream ${stream}` }));
  const shown = patches(g, ids);
  const visual = P.visualFigure(g.visuals, node.id, 72);
  card.classList.toggle("nc-with-fv", Boolean(visual));
  if (visual) card.appendChild(h("div", { class: "nc-card-both" }, visual, shown));
  else if (shown) card.appendChild(shown);
  if (pinned && node.top_inputs && node.top_inputs.length) {
    card.appendChild(h("div", { class: "nc-card-sub nc-inputs-title", text: "top inputs" }));
    card.appendChild(topInputs(g, node));
  }
}
