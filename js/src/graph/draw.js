// The graph of the selected class and kind: layer labels, edges (SVG) and node tiles with
// example patches (one neuron's best patch, or a mosaic of a cluster's members).
import { clear, fillNotes, formatValue, h, svg } from "../util.js";
import * as P from "../patches.js";
import { members } from "./card.js";
import { clickNode, hoverNode, markSelection } from "./interaction.js";
import { edgePath, layout } from "./layout.js";
import { fit } from "./viewport.js";

/** The graphs of the selected kind, the selected class's name and its graph (if any). */
export function currentGraph(g) {
  const all = g.model.get("graphs") || {};
  const kind = all[g.model.get("kind")] || {};
  const name = g.classNames[g.state.get("cls")];
  return { kind, name, graph: name === undefined ? undefined : kind[name] };
}

function nodeTile(g, p) {
  const node = p.node;
  const tile = h("div", {
    class: "nc-node", title: "",
    style: { left: `${p.x - p.size / 2}px`, top: `${p.y - p.size / 2}px`, width: `${p.size}px`, height: `${p.size}px`,
             borderColor: g.layerColours[g.index.layers.indexOf(node.layer)] || "#adb5bd" },
    dataset: { id: node.id },
  });
  const ids = members(g, node);
  if (g.sheets && ids.length) {
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
  const label = ids.length > 1 ? `${node.id} (${ids.length})` : node.id;
  tile.appendChild(h("div", { class: "nc-node-label", text: label }));
  tile.addEventListener("mouseenter", () => hoverNode(g, node.id));
  tile.addEventListener("mouseleave", () => hoverNode(g, null));
  tile.addEventListener("click", (event) => { event.stopPropagation(); clickNode(g, node.id); });
  return tile;
}

function showMessage(g, text) {
  g.dom.overlay.style.display = "";
  g.dom.overlay.textContent = text;
}

function drawEdges(g, graph, pos) {
  const { edgesSvg } = g.dom;
  let maxW = 0;
  for (const e of graph.edges) if (pos.has(e.source) && pos.has(e.target)) maxW = Math.max(maxW, e.weight);
  let x1 = 0, y1 = 0;
  for (const p of pos.values()) { x1 = Math.max(x1, p.x + p.size); y1 = Math.max(y1, p.y + p.size + 20); }
  edgesSvg.setAttribute("width", x1 + 20); edgesSvg.setAttribute("height", y1 + 20);
  for (const e of graph.edges) {
    const s = pos.get(e.source), t = pos.get(e.target);
    if (!s || !t) continue;
    const path = svg("path", {
      d: edgePath(s, t),
      "stroke-width": (0.6 + 7 * (maxW > 0 ? e.weight / maxW : 0)).toFixed(2),
      class: e.kind === "coactivation" ? "nc-edge nc-edge-co" : "nc-edge",
    });
    const title = svg("title");
    title.textContent = `${e.source} → ${e.target}: ${formatValue(e.weight)}${e.kind ? ` (${e.kind})` : ""}`;
    path.appendChild(title);
    edgesSvg.appendChild(path);
    g.edges.push({ ...e, el: path });
  }
}

function drawLayerLabels(g, graph, pos) {
  const layers = graph.layers && graph.layers.length ? graph.layers : g.index.layers;
  const rowY = new Map();
  let left = Infinity;
  for (const p of pos.values()) { rowY.set(p.layer, p.y); left = Math.min(left, p.x - p.size / 2); }
  for (const [li, y] of rowY) {
    g.dom.labels.appendChild(h("div", { class: "nc-layer-label", text: layers[li], style: { top: `${y - 8}px`, left: `${left - 72}px` } }));
  }
}

/** Draw the current graph again (or say why there is none). */
export function build(g) {
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
  const pos = layout(graph, { xScale: model.get("x_scale"), yScale: model.get("y_scale"), minCount: model.get("min_count"), layerOrder: g.index.layers });
  drawLayerLabels(g, graph, pos);
  drawEdges(g, graph, pos);
  for (const [id, p] of pos) {
    p.el = nodeTile(g, p);
    dom.world.appendChild(p.el);
    g.placed.set(id, p);
  }
  dom.root.dataset.nodes = String(g.placed.size);
  dom.root.dataset.edges = String(g.edges.length);
  markSelection(g);
  fit(g);
}
