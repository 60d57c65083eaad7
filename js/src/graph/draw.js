// The graph of the selected class and kind: layer labels, edges (SVG) and node tiles with
// example patches (one neuron's best patch, or a mosaic of a cluster's members) or, switched to
// them, the nodes' feature visualisations; each labelled with its channel (or cluster) and,
// when the atlas has one, its concept. Only the nodes and edges the default view shows, unless
// the `show_all` trait asks for all of them.
import { clear, fillNotes, formatCount, h, svg } from "../util.js";
import * as P from "../patches.js";
import { members, nodeConcept } from "./card.js";
import { clickNode, hoverNode, markSelection, unpin } from "./interaction.js";
import { edgePath, layout, visible } from "./layout.js";
import { applyView, resetView } from "./viewport.js";

/** The graphs of the selected kind, the selected class's name and its graph (if any). */
export function currentGraph(g) {
  const all = g.model.get("graphs") || {};
  const kind = all[g.model.get("kind")] || {};
  const name = g.classNames[g.state.get("cls")];
  return { kind, name, graph: name === undefined ? undefined : kind[name] };
}

/** The tile's label: the channel (the row says the layer), or the cluster and its size. */
function nodeLabel(g, node, ids) {
  if (ids.length > 1) return `${node.id.split("@")[0].replace("cluster:", "cluster ")} · ${ids.length}`;
  const i = ids[0];
  if (i === undefined) return node.id;
  return `#${i - g.index.starts[g.index.layerOf(i)]}`;
}

function nodeTile(g, p) {
  const node = p.node;
  const ids = members(g, node);
  const concept = nodeConcept(g, ids);
  const tile = h("div", {
    class: "nc-node",
    style: { left: `${p.x - p.size / 2}px`, top: `${p.y - p.size / 2}px`, width: `${p.size}px`, height: `${p.size}px`,
             borderColor: g.layerColours[g.index.layers.indexOf(node.layer)] || "var(--nc-border-strong)" },
    dataset: { id: node.id },
    attrs: { "aria-label": `${node.id}, count ${formatCount(node.count)}${concept ? `, ${concept}` : ""}` },
  });
  const visual = g.model.get("tiles") === "featvis" ? P.visual(g.visuals, node.id, p.size - 4) : null;
  if (visual) tile.appendChild(visual);
  else if (g.sheets && ids.length) {
    if (ids.length === 1) tile.appendChild(P.patch(g.sheets, ids[0], 0, p.size - 4));
    else {
      const half = (p.size - 4) / 2;
      const mosaic = h("div", { class: "nc-mosaic" });
      for (const i of ids.slice(0, 4)) mosaic.appendChild(P.patch(g.sheets, i, 0, half));
      tile.appendChild(mosaic);
    }
  } else {
    tile.classList.add("nc-node-plain");
  }
  const caption = h("div", { class: "nc-node-caption", style: { width: `${p.size + 26}px` } },
    h("div", { class: "nc-node-label", text: nodeLabel(g, node, ids) }));
  if (concept) caption.appendChild(h("div", { class: "nc-node-concept", text: concept }));
  tile.appendChild(caption);
  tile.addEventListener("mouseenter", () => hoverNode(g, node.id));
  tile.addEventListener("mouseleave", () => hoverNode(g, null));
  tile.addEventListener("click", (event) => { event.stopPropagation(); clickNode(g, node.id); });
  return tile;
}

function showMessage(g, text) {
  g.dom.overlay.style.display = "";
  g.dom.overlay.textContent = text;
}

function drawEdges(g, edges, pos) {
  const { edgesSvg } = g.dom;
  let maxW = 0;
  for (const e of edges) if (pos.has(e.source) && pos.has(e.target)) maxW = Math.max(maxW, e.weight);
  let x1 = 0, y1 = 0;
  for (const p of pos.values()) { x1 = Math.max(x1, p.x + p.size); y1 = Math.max(y1, p.y + p.size + 20); }
  edgesSvg.setAttribute("width", x1 + 20); edgesSvg.setAttribute("height", y1 + 20);
  for (const e of edges) {
    const s = pos.get(e.source), t = pos.get(e.target);
    if (!s || !t) continue;
    const path = svg("path", {
      d: edgePath(s, t),
      "stroke-width": (0.8 + 7 * (maxW > 0 ? e.weight / maxW : 0)).toFixed(2),
      class: e.kind === "coactivation" ? "nc-edge nc-edge-co" : "nc-edge",
    });
    const title = svg("title");
    title.textContent = `${e.source} → ${e.target}: ${formatCount(e.weight)}${e.kind ? ` (${e.kind})` : ""}`;
    path.appendChild(title);
    edgesSvg.appendChild(path);
    g.edges.push({ ...e, el: path });
  }
}

/** The layer names, one per row, in a column over the left of the viewport (applyView keeps
 * them beside their rows at their own size, whatever the zoom). */
function drawLayerLabels(g, graph, pos) {
  const layers = graph.layers && graph.layers.length ? graph.layers : g.index.layers;
  const rows = new Map();  // layer -> {y, x: the left edge of its first tile}
  for (const p of pos.values()) {
    const row = rows.get(p.layer) || { y: p.y, x: Infinity };
    row.x = Math.min(row.x, p.x - p.size / 2);
    rows.set(p.layer, row);
  }
  for (const [li, row] of rows) {
    const name = layers[li] ?? "";
    g.dom.labels.appendChild(h("div", { class: "nc-layer-label", text: name, title: name, dataset: { y: row.y, x: row.x } }));
  }
}

/** Draw the current graph again (or say why there is none); `keepView` keeps the zoom. */
export function build(g, { keepView = false } = {}) {
  const { model, data, dom } = g;
  for (const p of g.placed.values()) p.el.remove();
  clear(dom.edgesSvg); clear(dom.labels);
  g.placed = new Map(); g.edges = [];
  const texts = [...(model.get("notes") || [])];
  if (!g.sheets) texts.push((data.get("notes") || {}).patches || "no example patches");
  fillNotes(dom.notes, texts);
  const { kind, name, graph } = currentGraph(g);
  dom.overlay.style.display = "none";
  dom.root.dataset.nodes = "0";
  if (!Object.keys(kind).length) return showMessage(g, "No graphs in this atlas: run the attribution graph or cluster graph analysis.");
  if (name === undefined) return showMessage(g, "Pick a class to see its graph.");
  if (!graph) return showMessage(g, `No ${model.get("kind")} graph for the class “${name}” (the atlas has graphs for ${Object.keys(kind).length} classes).`);
  const showAll = model.get("show_all");
  const pos = layout(graph, { xScale: model.get("x_scale"), yScale: model.get("y_scale"), minCount: model.get("min_count"), layerOrder: g.index.layers, showAll });
  drawLayerLabels(g, graph, pos);
  drawEdges(g, visible(graph, showAll).edges, pos);
  for (const [id, p] of pos) {
    p.el = nodeTile(g, p);
    dom.world.appendChild(p.el);
    g.placed.set(id, p);
  }
  if (g.pinned !== null && !g.placed.has(g.pinned)) unpin(g);  // its node is no longer drawn
  dom.root.dataset.nodes = String(g.placed.size);
  dom.root.dataset.edges = String(g.edges.length);
  if (dom.count) {  // the toolbar's "showing 12 of 30 nodes"
    dom.count.textContent = `showing ${formatCount(g.placed.size)} of ${formatCount(graph.nodes.length)} nodes`;
    dom.count.title = `${formatCount(g.edges.length)} of ${formatCount(graph.edges.length)} edges`;
  }
  markSelection(g);
  if (keepView && g.moved) applyView(g);
  else resetView(g);
}
