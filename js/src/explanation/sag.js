// The chosen image's structured attention graph (SAG): each node the image with only its
// patches shown (the others black), labelled with its probability over the whole image's,
// placed by the stored layout; edges as lines; each child's removed patch outlined, thicker
// for a larger drop.
import { array, h, svg } from "../util.js";
import { drawOver } from "./heatmap.js";

const PX = 64;  // a node's thumbnail
const LABEL = 16;  // the label under it
const GAP = 24;  // between nodes
const OUTLINE = "#ffd400";

/** The outline width of a removed patch for a drop in relative probability (thin under 20
 * points, medium under 60, thick above). */
function dropWidth(drop) {
  return drop < 0.2 ? 1 : drop < 0.6 ? 2.5 : 4;
}

/** The SAG of `imageId` from the view's traits, or null: its nodes (global indices), their
 * relative probabilities and their incoming edges [parent, removed patch]. */
function graphOf(model, imageId) {
  const s = array(model.get("sag_image_ids"), "int32").indexOf(imageId);
  if (s < 0) return null;
  const full = array(model.get("sag_probabilities"), "float32")[s];
  const of = array(model.get("sag_node_image"), "int32");
  const prob = array(model.get("sag_node_probability"), "float32");
  const edges = array(model.get("sag_edges"), "int32");
  const nodes = [];
  for (let i = 0; i < of.length; i++) if (of[i] === s) nodes.push(i);
  const relative = new Map(nodes.map((i) => [i, prob[i] / full]));
  const incoming = new Map(nodes.map((i) => [i, []]));
  for (let e = 0; e < edges.length; e += 3) incoming.get(edges[e + 1])?.push([edges[e], edges[e + 2]]);
  return { nodes, relative, incoming };
}

/** Node `i`'s thumbnail: `image` (a canvas) with only its patches shown, each removed patch
 * of `incoming` outlined by its drop. */
function thumbnail(model, image, i, incoming, relative) {
  const grid = model.get("sag_grid");
  const patches = array(model.get("sag_node_patches"), "uint8");
  const canvas = h("canvas", { class: "nc-sag-node-image" });
  drawOver(canvas, image, null, 0, PX);
  const ctx = canvas.getContext("2d");
  const cell = canvas.width / grid;
  const at = (p) => [(p % grid) * cell, Math.floor(p / grid) * cell];
  ctx.fillStyle = "#000";
  for (let p = 0; p < grid * grid; p++) if (!patches[i * grid * grid + p]) ctx.fillRect(...at(p), cell, cell);
  ctx.strokeStyle = OUTLINE;
  for (const [parent, p] of incoming) {
    const width = dropWidth(relative.get(parent) - relative.get(i)) * canvas.width / PX;
    ctx.lineWidth = width;
    const [x, y] = at(p);
    ctx.strokeRect(x + width / 2, y + width / 2, cell - width, cell - width);
  }
  return canvas;
}

/** The SAG of image `imageId` (`image`: it as a canvas) into `el`; nothing when the atlas has
 * no SAG, a note when this image has none. */
export function drawSag(e, el, imageId, image) {
  const { model } = e;
  el.replaceChildren();
  if (!array(model.get("sag_image_ids"), "int32").length) return;
  el.appendChild(h("div", { class: "nc-panel-title", text: "Structured attention graph" }));
  const graph = graphOf(model, imageId);
  if (!graph) {
    el.appendChild(h("div", { class: "nc-sag-none", text: `No structured attention graph for image ${imageId}.` }));
    return;
  }
  const positions = array(model.get("sag_positions"), "float32");
  const layers = new Map();
  for (const i of graph.nodes) layers.set(positions[2 * i + 1], (layers.get(positions[2 * i + 1]) || 0) + 1);
  const width = Math.max(...layers.values(), 1) * (PX + GAP);
  const height = layers.size * (PX + LABEL + GAP);
  const place = (i) => [positions[2 * i] * (width - PX - GAP) + GAP / 2, positions[2 * i + 1] * (height - PX - LABEL - GAP) + GAP / 2];
  const lines = svg("svg", { class: "nc-sag-edges", width, height });
  for (const [child, parents] of graph.incoming) {
    for (const [parent] of parents) {
      const [x1, y1] = place(parent), [x2, y2] = place(child);
      lines.appendChild(svg("line", { x1: x1 + PX / 2, y1: y1 + PX + LABEL, x2: x2 + PX / 2, y2 }));
    }
  }
  const area = h("div", { class: "nc-sag-graph", style: { width: `${width}px`, height: `${height}px` } }, lines);
  for (const i of graph.nodes) {
    const [x, y] = place(i);
    const rel = graph.relative.get(i);
    area.appendChild(h("div", {
      class: `nc-sag-node${graph.incoming.get(i).length ? "" : " nc-sag-root"}`,
      dataset: { node: i, relative: rel.toFixed(4) },
      style: { left: `${x}px`, top: `${y}px` },
      title: `${(100 * rel).toFixed(0)}% of the whole image's probability`,
    }, thumbnail(model, image, i, graph.incoming.get(i), graph.relative),
    h("span", { class: "nc-sag-label", text: `${(100 * rel).toFixed(0)}%` })));
  }
  el.appendChild(area);
}
