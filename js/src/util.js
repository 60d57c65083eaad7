// Small DOM, binary-array and colour helpers shared by the views.
// User data (class, layer, concept names, labels) only ever reaches the page as text nodes.

/** Create an element. props: {class, style, title, attrs, on: {event: fn}}; children: nodes or strings (as text). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") el.className = value;
    else if (key === "style") Object.assign(el.style, value);
    else if (key === "text") el.textContent = String(value);
    else if (key === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (key === "attrs") for (const [a, v] of Object.entries(value)) el.setAttribute(a, String(v));
    else if (key === "dataset") for (const [a, v] of Object.entries(value)) el.dataset[a] = String(v);
    else el[key] = value;
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.appendChild(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
export function svg(tag, attrs = {}) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  return el;
}

/** A <select> with options [{value, label}] (labels as text). */
export function select(options, value, onChange, title) {
  const el = h("select", { class: "nc-select", title });
  for (const opt of options) {
    el.appendChild(h("option", { value: String(opt.value), text: opt.label }));
  }
  el.value = String(value);
  el.addEventListener("change", () => onChange(el.value));
  return el;
}

/** Set a trait of a view's model and send it to the kernel. */
export function setTrait(model, name, value) {
  model.set(name, value);
  model.save_changes();
}

/** A row of buttons that sets the trait `name` to one of `options` ([value, label, title]
 * each); the button of the trait's value is on (`aria-pressed`), each carries `data-<key>`. */
export function segmented(model, name, options, key, { cls = "", title } = {}) {
  const seg = h("span", { class: `nc-seg ${cls}`.trim(), title });
  for (const [value, label, tip] of options) {
    const on = model.get(name) === value;
    seg.appendChild(h("button", {
      class: `nc-btn${on ? " nc-on" : ""}`, text: label, title: tip, dataset: { [key]: value },
      attrs: { "aria-pressed": on }, on: { click: () => setTrait(model, name, value) },
    }));
  }
  return seg;
}

// ---- binary traits -------------------------------------------------------------------------
// An array trait arrives as {dtype, shape, buffer}: the buffer holds the array's bytes in C order,
// little-endian (notebookcarto/views/traits.py); null when the trait is None.
const TYPES = {
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, float32: Float32Array, float64: Float64Array,
};

/** Bytes of a binary value (DataView, ArrayBuffer, typed array) as a Uint8Array (empty if none). */
export function bytes(value) {
  if (!value) return new Uint8Array(0);
  if (value instanceof Uint8Array) return value;
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Uint8Array(0);
}

// decoded arrays by trait value: model.get returns the same value until the trait changes, so
// every reader gets the same typed array (no copies, and sameness can be checked)
const DECODED = new WeakMap();

/**
 * An array trait as a typed array of its declared dtype, with `.shape` (and `.dtype`).
 * `dtype` is what the reader expects: the type of the empty array for a null trait, and checked
 * against the declared one.
 */
export function array(value, dtype) {
  if (value === null || value === undefined) {
    const empty = new TYPES[dtype](0);
    return Object.assign(empty, { shape: [0], dtype });
  }
  const known = DECODED.get(value);
  if (known) return known;
  const Type = TYPES[value.dtype];
  if (!Type) throw new Error(`notebookcarto: unknown array dtype ${JSON.stringify(value.dtype)}`);
  if (dtype && value.dtype !== dtype) throw new Error(`notebookcarto: expected a ${dtype} array, got ${value.dtype}`);
  const shape = Array.from(value.shape || [], Number);
  const length = shape.reduce((a, b) => a * b, 1);
  const b = bytes(value.buffer);
  if (b.byteLength !== length * Type.BYTES_PER_ELEMENT) {
    throw new Error(`notebookcarto: a ${value.dtype} array of shape [${shape}] needs ${length * Type.BYTES_PER_ELEMENT} bytes, got ${b.byteLength}`);
  }
  // views need aligned memory; a misaligned buffer is copied once
  const out = b.byteOffset % Type.BYTES_PER_ELEMENT === 0
    ? new Type(b.buffer, b.byteOffset, length) : new Type(b.slice().buffer);
  Object.assign(out, { shape, dtype: value.dtype });
  DECODED.set(value, out);
  return out;
}

/** A typed array (and its shape, default 1-D) as an array trait value for model.set. */
export function encodeArray(values, shape = [values.length]) {
  const dtype = Object.keys(TYPES).find((name) => values instanceof TYPES[name]);
  if (!dtype) throw new Error("notebookcarto: encodeArray needs a typed array");
  // the widget protocol sends a view's whole ArrayBuffer: give it one of exactly these bytes
  const whole = values.byteOffset === 0 && values.byteLength === values.buffer.byteLength;
  const buffer = whole ? values.buffer : values.slice().buffer;
  return { dtype, shape: Array.from(shape), buffer: new DataView(buffer) };
}

// ---- neurons ---------------------------------------------------------------------------------
/** Neuron ids "layer:channel" <-> indices, from the layer names and sizes. */
export function neuronIndex(data) {
  const layers = data.get("layers") || [];
  const sizes = data.get("layer_sizes") || [];
  const starts = [];
  let total = 0;
  for (const s of sizes) { starts.push(total); total += s; }
  const layerOf = (i) => {
    let lo = 0, hi = starts.length - 1;
    while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (starts[mid] <= i) lo = mid; else hi = mid - 1; }
    return lo;
  };
  const byName = new Map(layers.map((name, i) => [name, i]));
  return {
    count: total, layers, sizes, starts, layerOf,
    id: (i) => { const l = layerOf(i); return `${layers[l]}:${i - starts[l]}`; },
    index: (id) => {
      const s = String(id); const cut = s.lastIndexOf(":");
      if (cut < 0) return -1;
      const l = byName.get(s.slice(0, cut));
      const c = Number(s.slice(cut + 1));
      if (l === undefined || !Number.isInteger(c) || c < 0 || c >= sizes[l]) return -1;
      return starts[l] + c;
    },
  };
}

/**
 * The residual streams of the AtlasData model `data`: `ids` (int32, an index of `names` per
 * neuron, -1 for none; empty when the atlas has no streams) and the stream `names`.
 */
export function streams(data) {
  return { ids: array(data.get("stream"), "int32"), names: data.get("stream_names") || [] };
}

/** The name of neuron `i`'s residual stream, "" for none. */
export function streamName(data, i) {
  const { ids, names } = streams(data);
  return ids[i] >= 0 ? names[ids[i]] ?? "" : "";
}

// ---- colours -------------------------------------------------------------------------------
// (the palettes are in palettes.js)
function hex(c) { return [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16)); }
function toHex(rgb) { return "#" + rgb.map((v) => Math.round(v).toString(16).padStart(2, "0")).join(""); }
export function mix(a, b, t) { const x = hex(a), y = hex(b); return toHex(x.map((v, i) => v + (y[i] - v) * t)); }

/** n colours along a multi-stop ramp ("#rrggbb" stops). */
export function ramp(stops, n) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const t = n === 1 ? 1 : i / (n - 1);
    const pos = t * (stops.length - 1);
    const j = Math.min(Math.floor(pos), stops.length - 2);
    out.push(stops.length === 1 ? stops[0] : mix(stops[j], stops[j + 1], pos - j));
  }
  return out;
}

// ---- numbers -------------------------------------------------------------------------------
/** A count as an integer ("1,204"); a count that is not whole (a mean) with one decimal. */
export function formatCount(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  const whole = Math.abs(v - Math.round(v)) < 1e-9;
  return whole ? Math.round(v).toLocaleString("en-US") : v.toLocaleString("en-US", { maximumFractionDigits: 1, minimumFractionDigits: 1 });
}

export function formatValue(v) {
  if (v === undefined || v === null || Number.isNaN(v)) return "–";
  const a = Math.abs(v);
  if (a === 0) return "0";
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 0.01) return v.toFixed(2);
  return v.toExponential(1);
}

export function pct(v) {
  return v === undefined || Number.isNaN(v) ? "–" : `${(100 * v).toFixed(1)}%`;
}

// ---- styles --------------------------------------------------------------------------------
export function injectCss(css) {
  const id = "notebookcarto-css";
  if (typeof document === "undefined" || document.getElementById(id)) return;
  const style = document.createElement("style");
  style.id = id;
  style.textContent = css;
  document.head.appendChild(style);
}

/** Subscribe to model events until the signal aborts. */
export function listen(model, events, fn, signal) {
  for (const ev of events) model.on(ev, fn);
  signal?.addEventListener("abort", () => { for (const ev of events) model.off(ev, fn); });
}

export function sameList(a, b) {
  if (a === b) return true;
  if (!a || !b || a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The selected neuron indices of the shared selection model (a uint32 array trait). */
export function selected(state) {
  return Array.from(array(state.get("neurons"), "uint32"));
}

// Traits of the selection model that are uint32 array traits (set from lists of indices).
const BINARY = new Set(["neurons"]);

/** Update the shared selection model (only what changed; then one sync to the kernel). */
export function setShared(state, changes, origin) {
  let changed = false;
  for (const [k, v] of Object.entries(changes)) {
    const cur = BINARY.has(k) ? selected(state) : state.get(k);
    if (Array.isArray(v) ? !sameList(cur, v) : cur !== v) changed = true;
  }
  if (!changed) return;
  state.set("origin", origin);
  for (const [k, v] of Object.entries(changes)) {
    state.set(k, BINARY.has(k) ? encodeArray(Uint32Array.from(v)) : v);
  }
  state.save_changes();
}

export function note(text) {
  return h("div", { class: "nc-note", text });
}

/** Fill a notes element: the first note on one line, the rest behind a disclosure. */
export function fillNotes(el, texts) {
  clear(el);
  const list = texts.filter(Boolean);
  el.style.display = list.length ? "" : "none";
  if (!list.length) return;
  const details = h("details", { class: "nc-details" },
    h("summary", {}, h("span", { class: "nc-badge", text: String(list.length) }),
      h("span", { class: "nc-summary-text", text: list.length === 1 ? list[0] : `${list[0]} (+${list.length - 1} more)` })));
  for (const text of list) details.appendChild(note(text));
  el.appendChild(details);
}

export function message(text) {
  return h("div", { class: "nc-message", text });
}

/** Scroll `container` (not the page) so that its descendant `el` is in view. */
export function scrollWithin(container, el) {
  if (!container || !el) return;
  const box = container.getBoundingClientRect(), item = el.getBoundingClientRect();
  if (item.top < box.top) container.scrollTop -= box.top - item.top;
  else if (item.bottom > box.bottom) container.scrollTop += item.bottom - box.bottom;
}
