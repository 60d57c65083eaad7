// Offline host: the anywidget model interface over the state embedded in an exported page.
// It reads the payload (gzip + base64: MAGIC "NCX1", uint32 header length, JSON header, then
// module code and binary buffers), creates one model per widget, imports each widget's own
// anywidget module from a blob URL and renders the root widget. No kernel, no network.
// Each buffer goes back where the export took it from, as a DataView, just as the widget
// protocol delivers buffers live: an array trait's ["xy", "buffer"] into its
// {dtype, shape, buffer}, a list of image sheets' ["patch_sheets", 3], any widget's own.

const REF = "anywidget:";

class Model {
  constructor(id, state, manager) {
    this.id = id;
    this.state = state;
    this.manager = manager;
    this.listeners = new Map(); // event -> [{fn, ctx}]
    this.widget_manager = manager;
  }
  get(key) { return this.state[key]; }
  set(key, value) {
    if (typeof key === "object") { for (const [k, v] of Object.entries(key)) this.set(k, v); return; }
    const old = this.state[key];
    this.state[key] = value;
    if (old !== value) { this.emit(`change:${key}`, value); this.emit("change"); }
  }
  save_changes() { /* nothing to sync without a kernel */ }
  send() { /* messages to Python have no receiver here */ }
  on(event, fn, ctx) {
    for (const ev of String(event).split(/\s+/)) {
      if (!this.listeners.has(ev)) this.listeners.set(ev, []);
      this.listeners.get(ev).push({ fn, ctx });
    }
  }
  off(event, fn, ctx) {
    const events = event ? String(event).split(/\s+/) : [...this.listeners.keys()];
    for (const ev of events) {
      const list = this.listeners.get(ev) || [];
      this.listeners.set(ev, list.filter((l) => (fn && l.fn !== fn) || (ctx !== undefined && l.ctx !== ctx)));
    }
  }
  emit(event, value) {
    for (const { fn } of [...(this.listeners.get(event) || [])]) {
      try { fn.call(this, this, value); } catch (err) { console.error(err); }
    }
  }
}

/** The model as a widget sees it: listeners tagged so they go away with the view. */
function proxy(model, tag) {
  return {
    get: (k) => model.get(k),
    set: (k, v) => model.set(k, v),
    save_changes: () => model.save_changes(),
    send: (...a) => model.send(...a),
    on: (ev, fn) => model.on(ev, fn, tag),
    off: (ev, fn) => model.off(ev, fn, tag),
    widget_manager: model.widget_manager,
  };
}

function setPath(obj, path, value) {
  let o = obj;
  for (let i = 0; i < path.length - 1; i++) o = o[path[i]];
  o[path[path.length - 1]] = value;
}

/** Base64 text -> bytes: the browser's decoder where it has one, else atob and a copy loop. */
function decodeBase64(text) {
  if (typeof Uint8Array.fromBase64 === "function") return Uint8Array.fromBase64(text.trim());
  const binary = atob(text.trim());
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

async function unpack() {
  const node = document.getElementById("nc-payload");
  let bytes = decodeBase64(node.textContent);
  performance.mark("nc:decoded");
  if (node.dataset.encoding === "gzip") {
    if (typeof DecompressionStream === "undefined") throw new Error("this browser cannot unpack the page (no DecompressionStream); use a current Chrome, Firefox or Safari");
    const gunzip = new DecompressionStream("gzip");
    const writer = gunzip.writable.getWriter();
    writer.write(bytes).catch(() => {});  // errors surface through the readable side
    writer.close().catch(() => {});
    bytes = new Uint8Array(await new Response(gunzip.readable).arrayBuffer());
  }
  const magic = String.fromCharCode(...bytes.subarray(0, 4));
  if (magic !== "NCX1") throw new Error("not a notebookcarto page payload");
  const length = new DataView(bytes.buffer, bytes.byteOffset + 4, 4).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length)));
  const body = bytes.subarray(8 + length);
  return { header, body };
}

async function main() {
  const status = document.getElementById("nc-status");
  const { header, body } = await unpack();
  performance.mark("nc:unpacked");
  // each binary trait gets its own ArrayBuffer: some front ends (Plotly's) read `.buffer` whole
  const slice = (start, len) => body.slice(start, start + len);
  const decoder = new TextDecoder();
  const moduleCache = new Map();
  const loadModule = (digest) => {
    if (!moduleCache.has(digest)) {
      const [start, len] = header.modules[digest];
      const url = URL.createObjectURL(new Blob([decoder.decode(body.subarray(start, start + len))], { type: "text/javascript" }));
      moduleCache.set(digest, import(url).then((m) => m.default || m));
    }
    return moduleCache.get(digest);
  };

  const manager = { models: new Map(), get_model: async (id) => manager.models.get(id) };
  for (const [id, spec] of Object.entries(header.models)) {
    const state = spec.state;
    for (const [path, start, len] of spec.buffers) setPath(state, path, new DataView(slice(start, len).buffer));
    manager.models.set(id, new Model(id, state, manager));
  }
  const css = new Set();
  const initialised = new Map();

  async function widget(id) {
    const model = manager.models.get(id);
    const spec = header.models[id];
    if (!model) throw new Error(`no widget ${id} in this page`);
    if (spec.css && !css.has(spec.css)) {
      css.add(spec.css);
      const style = document.createElement("style");
      style.textContent = spec.css;
      document.head.appendChild(style);
    }
    if (!initialised.has(id)) {
      // one widget definition per model (a factory is called once), initialised once
      initialised.set(id, (async () => {
        let def = await loadModule(spec.module);
        if (typeof def === "function") def = await def();
        await def.initialize?.({ model: proxy(model, Symbol("init")), host, experimental: {} });
        return def;
      })());
    }
    const def = await initialised.get(id);
    return { def, model };
  }

  const parse = (ref) => {
    if (typeof ref !== "string" || !ref.startsWith(REF)) throw new Error(`not a widget reference: ${JSON.stringify(ref)}`);
    return ref.slice(REF.length);
  };

  async function renderInto(id, el, signal) {
    const { def, model } = await widget(id);
    const tag = Symbol("view");
    signal?.addEventListener("abort", () => model.off(null, null, tag));
    const cleanup = await def.render?.({ model: proxy(model, tag), el, host, signal, experimental: {} });
    if (typeof cleanup === "function") signal?.addEventListener("abort", cleanup);
  }

  const host = {
    offline: true, // no kernel: views do here what Python would do live
    async getModel(ref) {
      const model = manager.models.get(parse(ref));
      if (!model) throw new Error(`no widget ${ref} in this page`);
      return proxy(model, Symbol("getModel"));
    },
    async getWidget(ref) {
      const id = parse(ref);
      const { def } = await widget(id);
      return { exports: def, render: ({ el, signal }) => renderInto(id, el, signal) };
    },
  };

  const root = document.getElementById("nc-root");
  const controller = new AbortController();
  await renderInto(header.root, root, controller.signal);
  status.remove();
  document.body.dataset.readyAt = performance.now().toFixed(1);  // for benchmarks
  document.body.dataset.ready = "1";
  window.notebookcarto = { manager, models: manager.models };
}

main().catch((err) => {
  console.error(err);
  const status = document.getElementById("nc-status");
  if (status) status.textContent = `Could not open this page: ${err && err.message ? err.message : err}`;
});
