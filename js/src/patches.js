// Example patches from sprite sheets: one neuron per row of k patches, sheet_rows neurons a sheet;
// feature visualisations from theirs, one image a row.
import { array, bytes, h, formatValue } from "./util.js";

// Shared by every view on the page (modules may be loaded once per widget): keyed by the
// sheet's binary value, so the same data is decoded once.
const CACHE = (globalThis.__notebookcartoSheets ||= new WeakMap());

function blobUrls(list, type) {
  return (list || []).map((value) => {
    if (value && CACHE.has(value)) return CACHE.get(value);
    const url = URL.createObjectURL(new Blob([bytes(value)], { type }));
    if (value && typeof value === "object") CACHE.set(value, url);
    return url;
  });
}

/** The patch sheets of an AtlasData model, or null when it has no patches. */
export function sheets(data) {
  const k = data.get("patch_k");
  const size = data.get("patch_size");
  if (!k || !size) return null;
  const type = data.get("patch_format") === "png" ? "image/png" : "image/webp";
  return {
    k, size, rows: data.get("sheet_rows"),
    urls: blobUrls(data.get("patch_sheets"), type),
    heat: blobUrls(data.get("heat_sheets"), type),
    values: array(data.get("patch_values"), "float32"),  // (neurons, k)
  };
}

/** Sprite sheets of any model from their parts (k images of size px a row, `rows` rows a
 * sheet, the encoded sheets `list` of `format` "webp" or "png"), for patch() and grid(). */
export function sheetSet({ k, size, rows, format, list }) {
  if (!k || !size) return null;
  const type = format === "png" ? "image/png" : "image/webp";
  return { k, size, rows, urls: blobUrls(list, type), heat: [], values: new Float32Array(0) };
}

/** One patch as a div with the sheet as its background, scaled to px pixels. */
export function patch(s, neuron, rank, px, { heat = false } = {}) {
  const sheet = Math.floor(neuron / s.rows);
  const row = neuron % s.rows;
  const scale = px / s.size;
  const url = s.urls[sheet];
  const el = h("div", {
    class: "nc-patch",
    style: {
      width: `${px}px`, height: `${px}px`,
      backgroundImage: url ? `url("${url}")` : "none",
      backgroundSize: `${s.k * s.size * scale}px auto`,
      backgroundPosition: `${-rank * px}px ${-row * px}px`,
    },
    dataset: { neuron, rank },
  });
  if (heat && s.heat[sheet]) {
    el.appendChild(h("div", {
      class: "nc-heat",
      style: {
        backgroundImage: `url("${s.heat[sheet]}")`,
        backgroundSize: `${s.k * s.size * scale}px auto`,
        backgroundPosition: `${-rank * px}px ${-row * px}px`,
      },
    }));
  }
  return el;
}

export function value(s, neuron, rank) {
  return s.values.length ? s.values[neuron * s.k + rank] : NaN;
}

/** Number of patches a neuron has (patches without an image have a NaN value). */
export function count(s, neuron) {
  if (!s.values.length) return s.k;
  let n = 0;
  for (let r = 0; r < s.k; r++) if (!Number.isNaN(s.values[neuron * s.k + r])) n++;
  return n;
}

/** A grid of a neuron's first n patches (3x3 by default). */
export function grid(s, neuron, { n = 9, cols = 3, px = 40 } = {}) {
  const el = h("div", { class: "nc-grid", style: { gridTemplateColumns: `repeat(${cols}, ${px}px)` } });
  const m = Math.min(n, count(s, neuron));
  for (let r = 0; r < m; r++) el.appendChild(patch(s, neuron, r, px));
  return el;
}

/** A patch with its activation value underneath. */
export function labelled(s, neuron, rank, px, heat) {
  return h("figure", { class: "nc-fig" },
    patch(s, neuron, rank, px, { heat }),
    h("figcaption", { text: formatValue(value(s, neuron, rank)) }));
}

/** The feature visualisations of an AtlasData model, or null when it has none: their sprite
 * sheets (one image a row), the row of each key (a neuron, class or graph node id), their
 * labels and the method that made them. */
export function visuals(data) {
  const keys = data.get("fv_keys") || [];
  const s = sheetSet({ k: 1, size: data.get("fv_size"), rows: data.get("fv_rows"), format: data.get("fv_format"), list: data.get("fv_sheets") });
  if (!keys.length || !s) return null;
  return { sheets: s, rows: new Map(keys.map((key, i) => [key, i])), labels: data.get("fv_labels") || [], method: data.get("fv_method") || "" };
}

/** The feature visualisation of `key` at px pixels, or null when `v` has none of it. */
export function visual(v, key, px) {
  const row = v ? v.rows.get(key) : undefined;
  if (row === undefined) return null;
  const el = patch(v.sheets, row, 0, px);
  el.classList.add("nc-fv");
  delete el.dataset.neuron; delete el.dataset.rank;  // its row in the sheets is no neuron
  el.dataset.fv = key;
  el.title = `feature visualisation of ${v.labels[row] || key}${v.method ? ` (${v.method})` : ""}`;
  return el;
}

/** The feature visualisation of `key` captioned "feature vis.", or null. */
export function visualFigure(v, key, px) {
  const el = visual(v, key, px);
  return el && h("figure", { class: "nc-fig nc-fv-fig" }, el, h("figcaption", { text: "feature vis." }));
}
