// Point positions: which positions the view shows (the embedding, a snapshot, a layer of the
// class embedding), normalised to the canvas, with their hover/lasso index.
import { array } from "../util.js";
import { buildKdIndex, emptyKdIndex, fillKdIndex, kdIndexInWorker } from "./kdindex.js";

// From this many points on, the hover/lasso index is built in a worker (see kdindex.js) and the
// points are drawn without waiting for it.
export const WORKER_INDEX_MIN = 200000;

/** Scale 2-D positions into [-extent, extent], keeping the aspect ratio. */
export function normalise(xy, n, extent = 0.92) {
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i], y = xy[2 * i + 1];
    if (!Number.isFinite(x) || !Number.isFinite(y)) continue;
    if (x < x0) x0 = x; if (x > x1) x1 = x; if (y < y0) y0 = y; if (y > y1) y1 = y;
  }
  if (!Number.isFinite(x0)) { x0 = y0 = -1; x1 = y1 = 1; }
  const span = Math.max(x1 - x0, y1 - y0) || 1;
  const cx = (x0 + x1) / 2, cy = (y0 + y1) / 2, s = (2 * extent) / span;
  const xs = new Float32Array(n), ys = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const x = xy[2 * i], y = xy[2 * i + 1];
    xs[i] = Number.isFinite(x) ? (x - cx) * s : 0;
    ys[i] = Number.isFinite(y) ? (y - cy) * s : 0;
  }
  return { x: xs, y: ys };
}

/** The points as regl-scatterplot keeps them, [x, y, valueA, valueB] rows, built in one plain
 * loop (its own conversion from columns is about twice as slow for a million points). */
export function pointRows(pos, c, n) {
  const rows = new Array(n);
  const { x, y } = pos, { a, b } = c;
  for (let i = 0; i < n; i++) rows[i] = [x[i], y[i], a[i], b[i]];
  return rows;
}

/** Whether two typed arrays view the same memory. */
function sameArray(a, b) {
  return a === b || (a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.length === b.length);
}

/** The positions to show now: {xy (interleaved x, y), n}, or null (classes without a class
 * embedding). */
export function positions(v) {
  const { model } = v;
  if (v.mode() === "classes") {
    const all = array(model.get("class_xy"), "float32");  // (layers, classes, 2)
    const k = v.classNames.length;
    const layers = model.get("class_layers") || [];
    if (!k || !layers.length) return null;
    const l = Math.max(0, Math.min(model.get("class_layer"), layers.length - 1));
    return { xy: all.subarray(l * k * 2, (l + 1) * k * 2), n: k };
  }
  const snaps = array(model.get("snapshots"), "float32");  // (snapshots, points, 2)
  const s = model.get("snapshot");
  const count = v.index.count;
  if (snaps.length && s >= 0 && s < snaps.shape[0] && snaps.shape[1] === count) {
    return { xy: snaps.subarray(s * count * 2, (s + 1) * count * 2), n: count };
  }
  return { xy: array(model.get("xy"), "float32"), n: count };
}

/**
 * Normalised positions of one set of positions and, for many points, their hover/lasso index:
 * an empty index of the right size that the scatterplot uses at once, filled in place when the
 * worker has built it (until then hover and lasso find nothing; `onIndex(entry)` says when it
 * is full). The same positions are prepared once.
 */
export function prepare(v, p, onIndex) {
  const extent = v.mode() === "classes" ? 0.7 : 0.92;  // room for class labels
  const last = v.prepared;
  if (last && sameArray(last.xy, p.xy) && last.n === p.n && last.extent === extent) return last;
  const norm = normalise(p.xy, p.n, extent);
  const entry = { xy: p.xy, n: p.n, extent, pos: norm, index: null, filled: false, announced: false };
  if (p.n >= WORKER_INDEX_MIN) {
    entry.index = emptyKdIndex(p.n);
    kdIndexInWorker(norm.x, norm.y, { signal: v.signal }).then((built) => {
      if (v.signal?.aborted) return;
      fillKdIndex(entry.index, built || buildKdIndex(norm.x, norm.y));  // no worker: build here
      entry.filled = true;
      onIndex(entry);
    }).catch((err) => console.error("notebookcarto scatter index:", err));
  }
  v.prepared = entry;
  return entry;
}
