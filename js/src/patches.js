// Example patches from sprite sheets: one neuron per row of k patches, sheet_rows neurons a sheet.
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
