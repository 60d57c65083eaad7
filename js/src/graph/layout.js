// Where the nodes and edges of a graph go (world coordinates), and the view that fits them.

const GAP = 150;      // vertical distance between layers (world units) at y_scale 1
const WIDTH = 900;    // layout width at x_scale 1

/** Node positions: layers stacked deep (top) to shallow (bottom), x from the layout or by count. */
export function layout(graph, { xScale = 1, yScale = 1, minCount = 0, layerOrder = [] } = {}) {
  const layers = graph.layers && graph.layers.length ? graph.layers : layerOrder;
  const nodes = graph.nodes.filter((n) => n.count >= minCount);
  const maxCount = Math.max(1, ...graph.nodes.map((n) => n.count));
  const byLayer = new Map();
  for (const node of nodes) {
    let li = layers.indexOf(node.layer);
    if (li < 0) li = 0;
    if (!byLayer.has(li)) byLayer.set(li, []);
    byLayer.get(li).push(node);
  }
  const xs = graph.nodes.filter((n) => n.x !== undefined).map((n) => n.x);
  const x0 = xs.length ? Math.min(...xs) : 0, x1 = xs.length ? Math.max(...xs) : 1;
  const width = WIDTH * xScale;
  const out = new Map();
  const L = Math.max(layers.length, 1);
  for (const [li, group] of byLayer) {
    const y = (L - 1 - li) * GAP * yScale + 60;
    const items = group.map((node) => ({ node, size: 26 + 34 * Math.sqrt(node.count / maxCount) }));
    if (xs.length === graph.nodes.length && x1 > x0) {
      for (const it of items) it.x = 40 + ((it.node.x - x0) / (x1 - x0)) * (width - 80);
      items.sort((a, b) => a.x - b.x);
    } else {
      items.sort((a, b) => b.node.count - a.node.count);
      items.forEach((it, i) => { it.x = 40 + ((i + 0.5) / items.length) * (width - 80); });
    }
    // keep nodes of a layer from overlapping, then centre the row again
    for (let i = 1; i < items.length; i++) {
      const min = items[i - 1].x + (items[i - 1].size + items[i].size) / 2 + 10;
      if (items[i].x < min) items[i].x = min;
    }
    if (items.length) {
      const shift = (items[0].x + items[items.length - 1].x) / 2 - width / 2;
      const span = items[items.length - 1].x - items[0].x;
      if (span > width - 80) for (const it of items) it.x -= shift;
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

/** The view {x, y, k} that fits the placed nodes (and the layer labels on their left) into a
 * viewport of vw x vh pixels; null when nothing is placed. */
export function fitView(placed, vw, vh) {
  if (!placed.size) return null;
  let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
  for (const p of placed.values()) {
    x0 = Math.min(x0, p.x - p.size / 2); x1 = Math.max(x1, p.x + p.size / 2);
    y0 = Math.min(y0, p.y - p.size / 2); y1 = Math.max(y1, p.y + p.size / 2 + 16);
  }
  x0 -= 70; // room for the layer labels
  const k = Math.min(vw / (x1 - x0 + 70), vh / (y1 - y0 + 50), 2.5);
  return { k, x: (vw - (x1 + x0) * k) / 2, y: (vh - (y1 + y0) * k) / 2 };
}
