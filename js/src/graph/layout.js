// Where the nodes and edges of a graph go (world coordinates), and the views of them: the
// readable view the graph opens in (tiles of at least MIN_TILE_PX on screen, labels at full
// size, the deepest layers first) and the view that fits all of it.

export const GAP = 156;       // vertical distance between layers (world px) at y_scale 1
const WIDTH = 360;            // the narrowest layout at x_scale 1 (wider as its widest layer needs)
const SIDE = 40;              // room left and right of the rows
const SPACING = 30;           // between the tiles of a row (room for their labels)
export const TILE = [48, 76]; // tile size (world px) from the smallest to the largest count
export const MIN_TILE_PX = 40;
const LABEL_PX = 13;          // the tiles' label font (world px, widget.css .nc-node-label)
const MIN_LABEL_PX = 11;      // the smallest it may be drawn at in the readable view
export const LABELS_PX = 84;  // the layer labels' column, over the left of the viewport

/** Whether the default view leaves out some of the graph's nodes or edges (`shown: false`). */
export function hasHidden(graph) {
  return graph.nodes.some((n) => n.shown === false) || graph.edges.some((e) => e.shown === false);
}

/** The nodes and edges a view draws: those marked shown (an entry without `shown` is), or
 * all of them with `showAll`. */
export function visible(graph, showAll = false) {
  const keep = (item) => showAll || item.shown !== false;
  return { nodes: graph.nodes.filter(keep), edges: graph.edges.filter(keep) };
}

/** Node positions: layers stacked deep (top) to shallow (bottom), x from the layout (`x` of
 * the shown nodes, or `x_all` with `showAll`) or by count. The map lists the nodes row by row
 * from the top (the order they are drawn in). */
export function layout(graph, { xScale = 1, yScale = 1, minCount = 0, layerOrder = [], showAll = false } = {}) {
  const layers = graph.layers && graph.layers.length ? graph.layers : layerOrder;
  const inView = visible(graph, showAll).nodes;
  const nodes = inView.filter((n) => n.count >= minCount);
  const xOf = (n) => (showAll && n.x_all !== undefined ? n.x_all : n.x);
  const maxCount = Math.max(1, ...graph.nodes.map((n) => n.count));
  const byLayer = new Map();
  for (const node of nodes) {
    let li = layers.indexOf(node.layer);
    if (li < 0) li = 0;
    if (!byLayer.has(li)) byLayer.set(li, []);
    byLayer.get(li).push(node);
  }
  const size = (node) => TILE[0] + (TILE[1] - TILE[0]) * Math.sqrt(Math.max(0, node.count) / maxCount);
  let widest = 0;
  for (const group of byLayer.values()) widest = Math.max(widest, group.reduce((w, n) => w + size(n) + SPACING, 0));
  const width = Math.max(WIDTH, widest + 2 * SIDE) * xScale;
  const xs = inView.map(xOf).filter((x) => x !== undefined);
  const x0 = xs.length ? Math.min(...xs) : 0, x1 = xs.length ? Math.max(...xs) : 1;
  const out = new Map();
  const L = Math.max(layers.length, 1);
  for (const li of [...byLayer.keys()].sort((a, b) => b - a)) {
    const group = byLayer.get(li);
    const y = (L - 1 - li) * GAP * yScale + 60;
    const items = group.map((node) => ({ node, size: size(node) }));
    if (xs.length === inView.length && x1 > x0) {
      for (const it of items) it.x = SIDE + ((xOf(it.node) - x0) / (x1 - x0)) * (width - 2 * SIDE);
      items.sort((a, b) => a.x - b.x);
    } else {
      items.sort((a, b) => b.node.count - a.node.count);
      items.forEach((it, i) => { it.x = SIDE + ((i + 0.5) / items.length) * (width - 2 * SIDE); });
    }
    // keep the tiles of a row (and their labels) apart, then centre the row again
    for (let i = 1; i < items.length; i++) {
      const min = items[i - 1].x + (items[i - 1].size + items[i].size) / 2 + SPACING;
      if (items[i].x < min) items[i].x = min;
    }
    if (items.length) {
      const shift = (items[0].x + items[items.length - 1].x) / 2 - width / 2;
      const span = items[items.length - 1].x - items[0].x;
      if (span > width - 2 * SIDE) for (const it of items) it.x -= shift;
    }
    for (const it of items) out.set(it.node.id, { x: it.x, y, size: it.size, node: it.node, layer: li });
  }
  return out;
}

/** The SVG path of an edge between placed nodes s and t: from the edge of one tile to the
 * edge of the other, vertical at both ends. */
export function edgePath(s, t) {
  const dir = Math.sign(s.y - t.y || 1);
  const sy = s.y - (s.size / 2) * dir, ty = t.y + (t.size / 2) * dir;
  const mid = (sy + ty) / 2;
  return `M${s.x},${sy} C${s.x},${mid} ${t.x},${mid} ${t.x},${ty}`;
}

function bounds(placed) {
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const p of placed.values()) {
    x0 = Math.min(x0, p.x - p.size / 2); x1 = Math.max(x1, p.x + p.size / 2);
    y0 = Math.min(y0, p.y - p.size / 2); y1 = Math.max(y1, p.y + p.size / 2 + 30);  // labels
  }
  return { x0, y0, x1, y1 };
}

/** The view {x, y, k} that fits all placed nodes into a viewport of vw x vh pixels, right of
 * the layer labels; null when nothing is placed. */
export function fitView(placed, vw, vh) {
  if (!placed.size) return null;
  const { x0, y0, x1, y1 } = bounds(placed);
  const w = Math.max(vw - LABELS_PX - 12, 40), hgt = Math.max(vh - 24, 40);
  const k = Math.min(w / (x1 - x0), hgt / (y1 - y0), 1.5);
  return { k, x: LABELS_PX + (w - (x1 - x0) * k) / 2 - x0 * k, y: 12 + (hgt - (y1 - y0) * k) / 2 - y0 * k };
}

/** The view the graph opens in: all of it when that keeps the smallest tile at least
 * MIN_TILE_PX wide and the labels at least MIN_LABEL_PX high, else the zoom that does, with
 * the top (deepest) row centred and at the top. */
export function readableView(placed, vw, vh) {
  const fitted = fitView(placed, vw, vh);
  if (!fitted) return null;
  let smallest = Infinity;
  for (const p of placed.values()) smallest = Math.min(smallest, p.size);
  const k = Math.min(Math.max((MIN_TILE_PX + 0.5) / smallest, (MIN_LABEL_PX + 0.2) / LABEL_PX), 1);  // (+: rounding)
  if (fitted.k >= k) return fitted;
  const { y0 } = bounds(placed);
  const top = Math.min(...[...placed.values()].map((p) => p.y));
  const row = [...placed.values()].filter((p) => p.y === top);
  const cx = (Math.min(...row.map((p) => p.x - p.size / 2)) + Math.max(...row.map((p) => p.x + p.size / 2))) / 2;
  const w = Math.max(vw - LABELS_PX - 12, 40);
  return { k, x: LABELS_PX + w / 2 - cx * k, y: 14 - y0 * k };
}
