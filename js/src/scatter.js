// ProjectionScatter: neurons (or classes) as WebGL points, linked through the shared selection.
import createScatterplot from "regl-scatterplot";
import {
  CATEGORICAL, DEPTH_STOPS, HEAT_STOPS, NONE_COLOR, clear, f32, fillNotes, h, i32, listen, neuronIndex, pct, ramp, select, selected, setShared, u32,
} from "./util.js";
import * as P from "./patches.js";
import { buildKdIndex, emptyKdIndex, fillKdIndex, kdIndexInWorker } from "./kdindex.js";

const ORIGIN = "scatter";
const CARDS = "scatter-neighbours";
const ACCURACY_STOPS = ["#e03131", "#f59f00", "#94d82d", "#2f9e44"];
// From this many points on, the hover/lasso index is built in a worker (see kdindex.js) and the
// points are drawn without waiting for it.
const WORKER_INDEX_MIN = 200000;

/** Scale 2-D positions into [-extent, extent], keeping the aspect ratio. */
function normalise(xy, n, extent = 0.92) {
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
function pointRows(pos, c, n) {
  const rows = new Array(n);
  const { x, y } = pos, { a, b } = c;
  for (let i = 0; i < n; i++) rows[i] = [x[i], y[i], a[i], b[i]];
  return rows;
}

/** Whether two typed arrays view the same memory (trait getters make new views each call). */
function sameArray(a, b) {
  return a === b || (a.buffer === b.buffer && a.byteOffset === b.byteOffset && a.length === b.length);
}

/** How many distinct non-negative labels the first n of `labels` hold (max label `top`). */
function distinct(labels, n, top) {
  if (top < 0) return 0;
  if (top >= 1 << 24) return new Set(Array.from(labels.subarray(0, n)).filter((c) => c >= 0)).size;
  const seen = new Uint8Array(top + 1);
  let count = 0;
  for (let i = 0; i < n; i++) {
    const c = labels[i];
    if (c >= 0 && !seen[c]) { seen[c] = 1; count++; }
  }
  return count;
}

/** Resolves in the next animation frame (or after 100 ms where frames do not run). */
function nextFrame() {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 100);
    requestAnimationFrame(() => { clearTimeout(timer); resolve(); });
  });
}

/** The relevance (Summit's A, scaled per layer) of every neuron for class c. */
export function relevance(data, c, n) {
  const out = new Float32Array(n);
  const ptr = u32(data.get("rel_indptr"));
  if (c < 0 || c + 1 >= ptr.length) return out;
  const index = u32(data.get("rel_index")), value = f32(data.get("rel_value"));
  for (let j = ptr[c]; j < ptr[c + 1]; j++) out[index[j]] = value[j];
  return out;
}

function nearest2d(pos, i, k, n) {
  const best = [];
  const x = pos.x[i], y = pos.y[i];
  for (let j = 0; j < n; j++) {
    if (j === i) continue;
    const d = (pos.x[j] - x) ** 2 + (pos.y[j] - y) ** 2;
    if (best.length < k || d < best[best.length - 1][0]) {
      best.push([d, j]);
      best.sort((a, b) => a[0] - b[0]);
      if (best.length > k) best.pop();
    }
  }
  return best.map((b) => b[1]);
}

export async function renderScatter({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const index = neuronIndex(data);
  const classNames = data.get("class_names") || [];
  const sheets = P.sheets(data);
  const clusters = i32(data.get("cluster"));
  const concepts = i32(data.get("concept"));
  const conceptNames = data.get("concept_names") || [];

  // ---- layout ----------------------------------------------------------------------------
  const root = h("div", { class: "nc-view nc-scatter" });
  const toolbar = h("div", { class: "nc-toolbar" });
  const wrap = h("div", { class: "nc-canvas-wrap" });
  const canvas = h("canvas", { class: "nc-canvas" });
  const rings = h("div", { class: "nc-rings" });
  const labels = h("div", { class: "nc-rings nc-labels" });
  const legend = h("div", { class: "nc-legend" });
  const card = h("div", { class: "nc-card", style: { display: "none" } });
  const overlay = h("div", { class: "nc-overlay", style: { display: "none" } });
  const hint = h("div", { class: "nc-hint", style: { display: "none" } });
  const side = h("div", { class: "nc-side", style: { display: "none" } });
  const notes = h("div", { class: "nc-notes" });
  wrap.append(canvas, labels, rings, legend, hint, card, overlay);
  root.append(toolbar, h("div", { class: "nc-body" }, wrap, side), notes);
  el.appendChild(root);
  const setHeight = () => { root.style.height = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();
  // the notes and the toolbar take their room before the canvas size is read, so the layout does
  // not change (and a million points are not drawn again) once the points are on screen
  let shownNotes = null;
  function showNotes() {
    const texts = [...(model.get("notes") || [])];
    if (!sheets) texts.push((data.get("notes") || {}).patches || "no example patches");
    const key = JSON.stringify(texts);
    if (key !== shownNotes) { shownNotes = key; fillNotes(notes, texts); }
  }
  const mode = () => model.get("mode");
  let scatter = null;  // created below, once the layout is final
  showNotes();
  buildToolbar();

  // ---- points ----------------------------------------------------------------------------
  let pos = { x: new Float32Array(0), y: new Float32Array(0) };
  let n = 0;

  // Normalised positions of one set of positions and, for many points, their hover/lasso index:
  // an empty index of the right size that the scatterplot uses at once, filled in place when the
  // worker has built it (until then hover and lasso find nothing; `data-interactive` tells when
  // they work). The first set is prepared before the scatterplot is created.
  let prepared = null;
  let drawnEntry = null;  // the prepared positions of the last finished draw
  const pointer = { x: 0, y: 0, inside: false };  // the mouse over the canvas (client coordinates)
  function prepare(p) {
    const extent = mode() === "classes" ? 0.7 : 0.92;  // room for class labels
    if (prepared && sameArray(prepared.xy, p.xy) && prepared.n === p.n && prepared.extent === extent) return prepared;
    const norm = normalise(p.xy, p.n, extent);
    const entry = { xy: p.xy, n: p.n, extent, pos: norm, index: null, filled: false, announced: false };
    if (p.n >= WORKER_INDEX_MIN) {
      entry.index = emptyKdIndex(p.n);
      kdIndexInWorker(norm.x, norm.y, { signal }).then((built) => {
        if (signal?.aborted) return;
        fillKdIndex(entry.index, built || buildKdIndex(norm.x, norm.y));  // no worker: build here
        entry.filled = true;
        indexReady(entry);
      }).catch((err) => console.error("notebookcarto scatter index:", err));
    }
    prepared = entry;
    return entry;
  }
  const initial = positions();
  if (initial) prepare(initial);

  let size = [Math.max(wrap.clientWidth, 10), Math.max(wrap.clientHeight, 10)];

  // Very large projections: square points without alpha blending draw several times faster.
  const huge = index.count >= 500000;
  scatter = createScatterplot({
    canvas,
    performanceMode: huge,
    width: size[0],
    height: size[1],
    backgroundColor: "#ffffff",
    pointSize: model.get("point_size"),
    opacity: model.get("opacity"),
    pointColorActive: "#d9480f",
    pointColorHover: "#212529",
    pointOutlineWidth: 2,
    pointSizeSelected: 2,
    showReticle: true,
    reticleColor: [0.3, 0.3, 0.3, 0.35],
    lassoColor: "#4c6ef5",
    lassoInitiator: false,
    lassoInitiatorParentElement: wrap,
    lassoLongPressIndicatorParentElement: wrap,
    deselectOnDblClick: true,
    deselectOnEscape: true,
    spatialIndexUseWorker: false,
    syncEvents: true, // hover cards appear in the same task as the mouse move, not after a frame
  });
  root.dataset.points = "0";

  function positions() {
    if (mode() === "classes") {
      const all = f32(model.get("class_xy"));
      const k = classNames.length;
      const layers = model.get("class_layers") || [];
      if (!k || !layers.length) return null;
      const l = Math.max(0, Math.min(model.get("class_layer"), layers.length - 1));
      return { xy: all.subarray(l * k * 2, (l + 1) * k * 2), n: k };
    }
    const snaps = f32(model.get("snapshots"));
    const s = model.get("snapshot");
    const count = index.count;
    if (snaps.length && s >= 0 && (s + 1) * count * 2 <= snaps.length) {
      return { xy: snaps.subarray(s * count * 2, (s + 1) * count * 2), n: count };
    }
    return { xy: f32(model.get("xy")), n: count };
  }

  function colours() {
    // returns {valueA, valueB, colorBy, pointColor, legend: [...]}
    const by = model.get("color_by");
    const a = new Float32Array(n), b = new Float32Array(n);
    if (mode() === "classes") {
      const acc = f32(model.get("class_accuracy"));
      if (acc.length === n) {
        for (let i = 0; i < n; i++) b[i] = Number.isNaN(acc[i]) ? 0 : acc[i];
        return { a, b, colorBy: "valueB", pointColor: ramp(ACCURACY_STOPS, 32),
                 legend: { kind: "ramp", title: "accuracy", stops: ACCURACY_STOPS, lo: "0%", hi: "100%" } };
      }
      return { a, b, colorBy: "valueA", pointColor: [CATEGORICAL[0]], legend: null };
    }
    if (by === "cluster" && clusters.length === n) {
      const k = CATEGORICAL.length;
      let top = -1;
      for (let i = 0; i < n; i++) {
        const c = clusters[i];
        a[i] = c >= 0 ? 1 + (c % k) : 0;
        if (c > top) top = c;
      }
      const count = distinct(clusters, n, top);
      return { a, b, colorBy: "valueA", pointColor: [NONE_COLOR, ...CATEGORICAL],
               legend: { kind: "text", items: [[CATEGORICAL[0], count === 1 ? "1 cluster" : `${count} clusters${count > CATEGORICAL.length ? " (colours repeat)" : ""}`], [NONE_COLOR, "not in a cluster"]] } };
    }
    if (by === "concept" && concepts.length === n) {
      const tally = new Map();
      for (let i = 0; i < n; i++) {
        const c = concepts[i];
        a[i] = c >= 0 ? 1 + (c % CATEGORICAL.length) : 0;
        if (c >= 0) tally.set(c, (tally.get(c) || 0) + 1);
      }
      const top = [...tally.entries()].sort((p, q) => q[1] - p[1]).slice(0, 10);
      const items = top.map(([c, m]) => [CATEGORICAL[c % CATEGORICAL.length], `${conceptNames[c] ?? c} (${m})`]);
      items.push([NONE_COLOR, "no concept"]);
      return { a, b, colorBy: "valueA", pointColor: [NONE_COLOR, ...CATEGORICAL],
               legend: { kind: "text", title: data.get("concept_source") || "concept", items } };
    }
    if (by === "class relevance") {
      const c = state.get("cls");
      const rel = relevance(data, c, n);
      b.set(rel);
      const name = classNames[c];
      return { a, b, colorBy: "valueB", pointColor: ramp(HEAT_STOPS, 32),
               legend: name === undefined ? { kind: "text", items: [[NONE_COLOR, "select a class to colour by its relevance"]] }
                 : { kind: "ramp", title: `relevance for ${name}`, stops: ramp(HEAT_STOPS, 5), lo: "A = 0", hi: "layer max" } };
    }
    const colours = ramp(DEPTH_STOPS, Math.max(index.layers.length, 1));
    for (let i = 0; i < n; i++) a[i] = index.layerOf(i);
    return { a, b, colorBy: "valueA", pointColor: colours,
             legend: { kind: "text", items: index.layers.map((name, l) => [colours[l], name]) } };
  }

  function drawLegend(spec) {
    clear(legend);
    if (!spec) { legend.style.display = "none"; return; }
    legend.style.display = "";
    if (spec.title) legend.appendChild(h("div", { class: "nc-legend-title", text: spec.title }));
    if (spec.kind === "ramp") {
      legend.appendChild(h("div", { class: "nc-ramp", style: { background: `linear-gradient(90deg, ${spec.stops.join(",")})` } }));
      legend.appendChild(h("div", { class: "nc-ramp-labels" }, h("span", { text: spec.lo }), h("span", { text: spec.hi })));
      return;
    }
    for (const [colour, label] of spec.items) {
      legend.appendChild(h("div", { class: "nc-legend-item" },
        h("span", { class: "nc-swatch", style: { background: colour } }), h("span", { text: label })));
    }
  }

  // ---- visibility (filter) ---------------------------------------------------------------
  function visible() {
    if (mode() === "classes") return null;
    const f = model.get("filter");
    if (f === "class") {
      const c = state.get("cls");
      if (c < 0) return { points: null, why: "select a class to show its neurons" };
      const ptr = u32(data.get("rel_indptr"));
      if (c + 1 >= ptr.length) return { points: [], why: "this atlas has no class statistics" };
      const idx = u32(data.get("rel_index"));
      return { points: Array.from(idx.subarray(ptr[c], ptr[c + 1])), why: `no neuron counts for ${classNames[c]}` };
    }
    if (f === "clusters") {
      if (clusters.length !== n) return { points: [], why: "this atlas has no clusters" };
      const chosen = new Set();
      for (const i of selected(state)) if (clusters[i] >= 0) chosen.add(clusters[i]);
      if (!chosen.size) return { points: null, why: "select a neuron of a cluster (or a cluster in the graph) to show its cluster" };
      const pts = [];
      for (let i = 0; i < n; i++) if (chosen.has(clusters[i])) pts.push(i);
      return { points: pts, why: "" };
    }
    return null;
  }

  /** The filter's hint, overlay and counts for visible() `v` (the points follow separately). */
  function showFilter(v) {
    hint.textContent = v && !v.points ? v.why : "";
    hint.style.display = v && !v.points ? "" : "none";
    const shown = v && v.points ? v.points.length : n;
    root.dataset.visible = String(shown);
    overlay.style.display = v && v.points && !shown ? "" : "none";
    overlay.textContent = v && v.points && !shown ? v.why : "";
  }

  function applyFilter() {
    const v = visible();
    showFilter(v);
    // no filter, or nothing chosen yet to filter by: show all (unfiltering rebuilds the point
    // index buffer and redraws, so only when something is filtered)
    if (!v || !v.points) {
      if (scatter.get("isPointsFiltered")) scatter.unfilter({ preventEvent: true });
    } else {
      scatter.filter(v.points, { preventEvent: true });
    }
  }

  // ---- selection and neighbours ----------------------------------------------------------
  function selectedPoints() {
    if (mode() === "classes") {
      const c = state.get("cls");
      return c >= 0 && c < n ? [c] : [];
    }
    return selected(state).filter((i) => i >= 0 && i < n);
  }

  function applySelection() {
    const pts = selectedPoints();
    if (pts.length) scatter.select(pts, { preventEvent: true });
    else if ((scatter.get("selectedPoints") || []).length) scatter.deselect({ preventEvent: true });
    updateNeighbours();
  }

  let ringed = [];   // [index, className]
  function placeRings() {
    clear(rings);
    for (const [i, cls] of ringed) {
      let p;
      try { p = scatter.getScreenPosition(i); } catch { p = undefined; }
      if (!p) continue;
      rings.appendChild(h("div", { class: `nc-ring ${cls}`, style: { left: `${p[0]}px`, top: `${p[1]}px` } }));
    }
  }

  let neighbours = [];
  function updateNeighbours() {
    neighbours = [];
    const sel = mode() === "neurons" ? selected(state) : [];
    if (sel.length === 1 && sel[0] < n) {
      const i = sel[0];
      const k = data.get("n_neighbors");
      const table = u32(data.get("neighbors"));
      neighbours = k > 0 && table.length === n * k ? Array.from(table.subarray(i * k, (i + 1) * k))
        : nearest2d(pos, i, 10, n);
    }
    clear(side);
    side.style.display = neighbours.length ? "" : "none";
    if (neighbours.length) {
      const k = data.get("n_neighbors");
      side.appendChild(h("div", { class: "nc-side-title", text: `Nearest neighbours of ${index.id(sel[0])}` }));
      side.appendChild(h("div", { class: "nc-side-sub", text: k > 0 ? "in the embedding (cosine)" : "in this 2-D projection" }));
      for (const j of neighbours) {
        const cardEl = h("button", {
          class: "nc-nb-card", title: index.id(j),
          on: {  // another origin than the canvas, so the points follow like any linked view
            click: () => setShared(state, { neurons: [j] }, CARDS),
            mouseenter: () => setShared(state, { hover: [j] }, CARDS),
            mouseleave: () => setShared(state, { hover: [] }, CARDS),
          },
        });
        if (sheets) cardEl.appendChild(P.grid(sheets, j, { n: 3, cols: 3, px: 26 }));
        cardEl.appendChild(h("span", { class: "nc-nb-id", text: index.id(j) }));
        side.appendChild(cardEl);
      }
    }
    setRings();
  }

  let localHover = -1;  // the point under the mouse here: its cluster is highlighted
  function setRings() {
    const hov = state.get("origin") === ORIGIN ? [] : state.get("hover");
    ringed = neighbours.map((j) => [j, "nc-ring-nb"]);
    if (mode() === "neurons") {
      for (const i of hov.slice(0, 500)) if (i < n) ringed.push([i, "nc-ring-hover"]);
      const c = localHover >= 0 && clusters.length === n ? clusters[localHover] : -1;
      if (c >= 0) {
        let shown = 0;
        for (let j = 0; j < n && shown < 300; j++) {
          if (clusters[j] === c && j !== localHover) { ringed.push([j, "nc-ring-cluster"]); shown++; }
        }
      }
    }
    placeRings();
  }

  // class names next to the points of the class embedding (few classes only)
  function placeLabels() {
    clear(labels);
    if (mode() !== "classes" || n > 40) return;
    for (let i = 0; i < n; i++) {
      let p;
      try { p = scatter.getScreenPosition(i); } catch { p = undefined; }
      if (!p) continue;
      labels.appendChild(h("div", { class: "nc-point-label", text: classNames[i] ?? String(i), style: { left: `${p[0] + 7}px`, top: `${p[1] - 7}px` } }));
    }
  }

  // ---- drawing ---------------------------------------------------------------------------
  let queue = Promise.resolve();
  function redraw(transition = false) {
    queue = queue.then(() => drawNow(transition)).catch((err) => console.error("notebookcarto scatter:", err));
    return queue;
  }

  async function drawNow(transition) {
    if (signal?.aborted) return;
    const p = positions();
    showNotes();
    if (!p) {
      n = 0;
      await scatter.clear?.();
      overlay.style.display = "";
      overlay.textContent = "No class embedding in this atlas: run the class embedding analysis (section 'class_embedding').";
      root.dataset.points = "0";
      drawLegend(null);
      return;
    }
    const sameCount = p.n === n;
    n = p.n;
    performance.mark("nc:scatter-prepare");
    const ready = prepare(p);
    pos = ready.pos;
    const c = colours();
    // the filter and the selection go into the same draw: one frame of all points, not three
    const v = visible();
    const chosen = selectedPoints();
    performance.mark("nc:scatter-draw");
    const size = mode() === "classes" ? Math.max(10, model.get("point_size") * 3) : model.get("point_size");
    scatter.set({ colorBy: c.colorBy, pointColor: c.pointColor, pointSize: size,
                  opacity: mode() === "classes" ? 0.95 : model.get("opacity") });
    // set() (here and when the scatterplot was created) asks for a redraw in its next animation
    // frame; let that frame pass first, else the points are drawn twice (a redraw of all points
    // right after the first frame)
    await nextFrame();
    if (signal?.aborted) return;
    clear(labels);
    await scatter.draw(pointRows(pos, c, n), {
      transition: transition && sameCount, transitionDuration: 750,
      zDataType: "categorical", wDataType: "continuous",
      spatialIndex: ready.index || undefined,  // else regl-scatterplot builds one before drawing
      select: chosen.length ? chosen : undefined,
      filter: v && v.points ? v.points : undefined,
    });
    performance.mark("nc:scatter-drawn");
    drawnEntry = ready;
    drawLegend(c.legend);
    placeLabels();
    showFilter(v);
    if (!chosen.length && (scatter.get("selectedPoints") || []).length) scatter.deselect({ preventEvent: true });
    updateNeighbours();
    performance.mark("nc:scatter-linked");
    if (!ready.index || ready.filled) interactive(ready);
    root.dataset.points = String(n);
    root.dataset.drawn = String(Number(root.dataset.drawn || 0) + 1);
    if (!root.dataset.firstFrame) {  // when the first drawn frame is on screen (for benchmarks)
      // the frame with the points is rendered in the next animation frame (WebGL, then copied
      // to the canvas); a task after it marks when that work is done
      requestAnimationFrame(() => setTimeout(() => {
        performance.mark("nc:scatter-frame");
        root.dataset.firstFrame = performance.now().toFixed(1);
      }, 0));
    }
  }

  // ---- the hover index arrives ----------------------------------------------------------
  function indexReady(entry) {
    if (entry !== prepared || entry !== drawnEntry) return;  // the draw still to finish says so
    if (scatter.get("spatialIndex") !== entry.index) {
      // this regl-scatterplot copied the index instead of viewing it: hand over the full one
      redraw();
      return;
    }
    interactive(entry);
  }
  /** Hover and lasso work for the drawn points from now: say so (for tests and benchmarks) and,
   * if the index came after the points, hover what is under a mouse that waited over them. */
  function interactive(entry) {
    if (entry.announced) return;
    entry.announced = true;
    if (!root.dataset.interactive) root.dataset.interactive = performance.now().toFixed(1);
    if (entry.index && pointer.inside) {
      canvas.dispatchEvent(new MouseEvent("mousemove", { clientX: pointer.x, clientY: pointer.y, bubbles: true }));
    }
  }

  // ---- hover card ------------------------------------------------------------------------
  let mouse = [0, 0];
  wrap.addEventListener("mousemove", (event) => {
    const r = wrap.getBoundingClientRect();
    mouse = [event.clientX - r.left, event.clientY - r.top];
    Object.assign(pointer, { x: event.clientX, y: event.clientY, inside: true });
    if (card.style.display !== "none") placeCard();
  });
  wrap.addEventListener("mouseleave", () => { pointer.inside = false; });
  function placeCard() {
    const w = card.offsetWidth, hgt = card.offsetHeight;
    const W = wrap.clientWidth, H = wrap.clientHeight;
    let x = mouse[0] + 14, y = mouse[1] + 14;
    if (x + w > W) x = Math.max(0, mouse[0] - w - 14);
    if (y + hgt > H) y = Math.max(0, mouse[1] - hgt - 14);
    card.style.left = `${x}px`; card.style.top = `${y}px`;
  }
  function showCard(i) {
    clear(card);
    if (mode() === "classes") {
      const acc = f32(model.get("class_accuracy"));
      card.append(h("div", { class: "nc-card-title", text: classNames[i] ?? `class ${i}` }),
        h("div", { class: "nc-card-sub", text: acc.length ? `accuracy ${pct(acc[i])}` : "" }));
    } else {
      const parts = [index.layers[index.layerOf(i)]];
      if (clusters.length === n && clusters[i] >= 0) parts.push(`cluster ${clusters[i]}`);
      if (concepts.length === n && concepts[i] >= 0) parts.push(conceptNames[concepts[i]] ?? "");
      card.append(h("div", { class: "nc-card-title", text: index.id(i) }),
        h("div", { class: "nc-card-sub", text: parts.join(" · ") }));
      if (sheets) card.appendChild(P.grid(sheets, i, { n: 9, cols: 3, px: 44 }));
      else card.appendChild(h("div", { class: "nc-card-sub", text: "no example patches in this atlas" }));
    }
    card.style.display = "";
    placeCard();
    root.dataset.hoverAt = performance.now().toFixed(1);
  }

  // ---- events ----------------------------------------------------------------------------
  scatter.subscribe("pointOver", (i) => {
    showCard(i);
    localHover = mode() === "neurons" ? i : -1;
    if (mode() === "neurons") setShared(state, { hover: [i] }, ORIGIN);
    setRings();
  });
  scatter.subscribe("pointOut", () => {
    card.style.display = "none";
    localHover = -1;
    if (mode() === "neurons") setShared(state, { hover: [] }, ORIGIN);
    setRings();
  });
  scatter.subscribe("select", ({ points }) => {
    if (mode() === "classes") {
      if (points.length) setShared(state, { cls: points[0] }, ORIGIN);
    } else {
      setShared(state, { neurons: Array.from(points) }, ORIGIN);
    }
    updateNeighbours();
  });
  scatter.subscribe("deselect", () => {
    if (mode() === "neurons") setShared(state, { neurons: [] }, ORIGIN);
    updateNeighbours();
  });
  scatter.subscribe("transitionEnd", () => { placeRings(); placeLabels(); });
  scatter.subscribe("view", () => { placeRings(); placeLabels(); });

  listen(state, ["change:neurons"], () => {
    if (state.get("origin") !== ORIGIN) applySelection();
    else updateNeighbours();
    if (model.get("filter") === "clusters") applyFilter();
  }, signal);
  listen(state, ["change:hover"], () => setRings(), signal);
  listen(state, ["change:cls"], () => {
    if (mode() === "classes") applySelection();
    else if (model.get("color_by") === "class relevance") redraw();
    else if (model.get("filter") === "class") applyFilter();
  }, signal);
  listen(model, ["change:color_by", "change:mode", "change:point_size", "change:opacity", "change:xy"], () => { buildToolbar(); redraw(); }, signal);
  listen(model, ["change:filter"], () => { buildToolbar(); applyFilter(); }, signal);
  listen(model, ["change:snapshot", "change:class_layer"], () => { buildToolbar(); redraw(true); }, signal);
  listen(model, ["change:tool"], () => { buildToolbar(); applyTool(); }, signal);
  listen(model, ["change:height"], () => setHeight(), signal);

  function applyTool() {
    scatter.set({ mouseMode: model.get("tool") === "lasso" ? "lasso" : "panZoom" });
  }

  function setTrait(name, value) {
    model.set(name, value);
    model.save_changes();
  }

  // ---- toolbar ---------------------------------------------------------------------------
  function buildToolbar() {
    clear(toolbar);
    toolbar.appendChild(h("span", { class: "nc-title", text: mode() === "classes" ? "Class embedding" : "Neuron projection" }));
    const modes = h("div", { class: "nc-seg" });
    for (const [value, label] of [["neurons", "Neurons"], ["classes", "Classes"]]) {
      modes.appendChild(h("button", {
        class: `nc-btn ${mode() === value ? "nc-on" : ""}`, text: label, dataset: { mode: value },
        on: { click: () => setTrait("mode", value) },
      }));
    }
    toolbar.appendChild(modes);
    if (mode() === "neurons") {
      const opts = (model.get("color_options") || []).map((o) => ({ value: o, label: `colour: ${o}` }));
      const colour = select(opts, model.get("color_by"), (v) => setTrait("color_by", v), "colour the points by");
      colour.classList.add("nc-colour");
      const filters = [{ value: "all", label: "show: all neurons" }, { value: "class", label: "show: the class's neurons" },
        { value: "clusters", label: "show: selected clusters" }];
      const f = select(filters, model.get("filter"), (v) => setTrait("filter", v), "which neurons to show");
      f.classList.add("nc-filter");
      toolbar.append(colour, f);
      const snaps = model.get("snapshot_labels") || [];
      if (snaps.length) {
        const s = model.get("snapshot");
        const slider = h("input", {
          type: "range", min: 0, max: snaps.length, step: 1, value: s < 0 ? snaps.length : s,
          class: "nc-range nc-snapshot", title: "embedding snapshot",
        });
        const label = h("span", { class: "nc-label", text: s < 0 ? "final" : snaps[s] });
        slider.addEventListener("input", () => {
          const v = Number(slider.value);
          label.textContent = v >= snaps.length ? "final" : snaps[v];
        });
        slider.addEventListener("change", () => { const v = Number(slider.value); setTrait("snapshot", v >= snaps.length ? -1 : v); });
        toolbar.append(h("span", { class: "nc-group", title: "embedding snapshots: how the embedding settled" },
          h("label", { class: "nc-label", text: "snapshot" }), slider, label));
      }
    } else {
      const layers = model.get("class_layers") || [];
      if (layers.length) {
        const opts = layers.map((name, i) => ({ value: i, label: `layer: ${name}` }));
        const s = select(opts, model.get("class_layer"), (v) => setTrait("class_layer", Number(v)), "layer of the class embedding");
        s.classList.add("nc-class-layer");
        toolbar.append(s);
      }
    }
    const tools = h("div", { class: "nc-seg" });
    for (const [value, label, title] of [["pan", "Pan", "drag to pan, wheel to zoom"], ["lasso", "Lasso", "drag to select (shift-drag works in pan mode too)"]]) {
      tools.appendChild(h("button", {
        class: `nc-btn ${model.get("tool") === value ? "nc-on" : ""}`, text: label, title, dataset: { tool: value },
        on: { click: () => setTrait("tool", value) },
      }));
    }
    toolbar.append(tools,
      h("button", { class: "nc-btn", text: "Fit", title: "reset zoom", on: { click: () => scatter.reset() } }),
      h("button", { class: "nc-btn", text: "Clear", title: "clear the selection", on: { click: () => setShared(state, { neurons: [] }, "clear") } }));
  }

  // ---- size ------------------------------------------------------------------------------
  const resize = new ResizeObserver(() => {
    const next = [Math.max(wrap.clientWidth, 10), Math.max(wrap.clientHeight, 10)];
    if (next[0] === size[0] && next[1] === size[1]) return;  // a redraw of 1M points is not free
    size = next;
    scatter.set({ width: next[0], height: next[1] });
    placeRings();
    placeLabels();
  });
  resize.observe(wrap);

  // for tests and scripts: where a point is on screen, what is selected and shown
  root.ncScatter = {
    position: (i) => { try { return scatter.getScreenPosition(i); } catch { return undefined; } },
    selected: () => Array.from(scatter.get("selectedPoints") || []),
    filtered: () => Array.from(scatter.get("filteredPoints") || []),
    neighbours: () => neighbours.slice(),
    spatialIndex: () => scatter.get("spatialIndex"),  // the hover/lasso index (KDBush buffer)
  };

  applyTool();
  await redraw();

  const cleanup = () => {
    resize.disconnect();
    try { scatter.destroy(); } catch { /* already gone */ }
    root.remove();
  };
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
