// AttributionGraph: Summit's attribution graph / NeuroCartography's cluster graph of one class.
import {
  DEPTH_STOPS, clear, fillNotes, formatValue, h, listen, neuronIndex, ramp, select, selected, setShared, svg,
} from "./util.js";
import * as P from "./patches.js";

const ORIGIN = "graph";
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

export async function renderGraph({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const index = neuronIndex(data);
  const classNames = data.get("class_names") || [];
  const sheets = P.sheets(data);
  const layerColours = ramp(DEPTH_STOPS, Math.max(index.layers.length, 1));

  const root = h("div", { class: "nc-view nc-graph" });
  const toolbar = h("div", { class: "nc-toolbar" });
  const viewport = h("div", { class: "nc-viewport" });
  const world = h("div", { class: "nc-world" });
  const edgesSvg = svg("svg", { class: "nc-edges" });
  const labels = h("div", { class: "nc-layer-labels" });
  const card = h("div", { class: "nc-gcard", style: { display: "none" } });
  const overlay = h("div", { class: "nc-overlay", style: { display: "none" } });
  const notes = h("div", { class: "nc-notes" });
  world.append(edgesSvg, labels);
  viewport.append(world, card, overlay);
  root.append(toolbar, viewport, notes);
  el.appendChild(root);
  const setHeight = () => { root.style.height = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();

  let placed = new Map();      // id -> {x, y, size, node, el}
  let edges = [];              // {source, target, weight, el}
  let pinned = null;
  let view = { x: 0, y: 0, k: 1 };

  const currentGraph = () => {
    const all = model.get("graphs") || {};
    const kind = all[model.get("kind")] || {};
    const c = state.get("cls");
    const name = classNames[c];
    return { kind, name, graph: name === undefined ? undefined : kind[name] };
  };

  const members = (node) => node.members.map((m) => index.index(m)).filter((i) => i >= 0);

  function applyView() {
    world.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.k})`;
  }

  function fit() {
    if (!placed.size) return;
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const p of placed.values()) {
      x0 = Math.min(x0, p.x - p.size / 2); x1 = Math.max(x1, p.x + p.size / 2);
      y0 = Math.min(y0, p.y - p.size / 2); y1 = Math.max(y1, p.y + p.size / 2 + 16);
    }
    x0 -= 70; // room for the layer labels
    const vw = viewport.clientWidth || 600, vh = viewport.clientHeight || 400;
    const k = Math.min(vw / (x1 - x0 + 70), vh / (y1 - y0 + 50), 2.5);
    view = { k, x: (vw - (x1 + x0) * k) / 2, y: (vh - (y1 + y0) * k) / 2 };
    applyView();
  }

  function nodeTile(p) {
    const node = p.node;
    const tile = h("div", {
      class: "nc-node", title: "",
      style: { left: `${p.x - p.size / 2}px`, top: `${p.y - p.size / 2}px`, width: `${p.size}px`, height: `${p.size}px`,
               borderColor: layerColours[index.layers.indexOf(node.layer)] || "#adb5bd" },
      dataset: { id: node.id },
    });
    const ids = members(node);
    if (sheets && ids.length) {
      if (ids.length === 1) tile.appendChild(P.patch(sheets, ids[0], 0, p.size - 4));
      else {
        const half = (p.size - 4) / 2;
        const mosaic = h("div", { class: "nc-mosaic" });
        for (const i of ids.slice(0, 4)) mosaic.appendChild(P.patch(sheets, i, 0, half));
        tile.appendChild(mosaic);
      }
    } else {
      tile.classList.add("nc-node-plain");
    }
    const label = ids.length > 1 ? `${node.id} (${ids.length})` : node.id;
    tile.appendChild(h("div", { class: "nc-node-label", text: label }));
    tile.addEventListener("mouseenter", () => hoverNode(node.id));
    tile.addEventListener("mouseleave", () => hoverNode(null));
    tile.addEventListener("click", (event) => { event.stopPropagation(); clickNode(node.id); });
    return tile;
  }

  function build() {
    for (const p of placed.values()) p.el.remove();
    clear(edgesSvg); clear(labels);
    placed = new Map(); edges = [];
    const texts = [...(model.get("notes") || [])];
    if (!sheets) texts.push((data.get("notes") || {}).patches || "no example patches");
    fillNotes(notes, texts);
    const { kind, name, graph } = currentGraph();
    overlay.style.display = "none";
    root.dataset.nodes = "0";
    if (!Object.keys(kind).length) return showMessage("No graphs in this atlas: run the attribution graph or cluster graph analysis.");
    if (name === undefined) return showMessage("Pick a class to see its graph.");
    if (!graph) return showMessage(`No ${model.get("kind")} graph for the class “${name}” (the atlas has graphs for ${Object.keys(kind).length} classes).`);
    const pos = layout(graph, { xScale: model.get("x_scale"), yScale: model.get("y_scale"), minCount: model.get("min_count"), layerOrder: index.layers });
    const layers = graph.layers && graph.layers.length ? graph.layers : index.layers;
    const rowY = new Map();
    let left = Infinity;
    for (const p of pos.values()) { rowY.set(p.layer, p.y); left = Math.min(left, p.x - p.size / 2); }
    for (const [li, y] of rowY) {
      labels.appendChild(h("div", { class: "nc-layer-label", text: layers[li], style: { top: `${y - 8}px`, left: `${left - 72}px` } }));
    }
    let maxW = 0;
    for (const e of graph.edges) if (pos.has(e.source) && pos.has(e.target)) maxW = Math.max(maxW, e.weight);
    let x1 = 0, y1 = 0;
    for (const p of pos.values()) { x1 = Math.max(x1, p.x + p.size); y1 = Math.max(y1, p.y + p.size + 20); }
    edgesSvg.setAttribute("width", x1 + 20); edgesSvg.setAttribute("height", y1 + 20);
    for (const e of graph.edges) {
      const s = pos.get(e.source), t = pos.get(e.target);
      if (!s || !t) continue;
      const sy = s.y - s.size / 2 * Math.sign(s.y - t.y || 1), ty = t.y + t.size / 2 * Math.sign(s.y - t.y || 1);
      const mid = (sy + ty) / 2;
      const path = svg("path", {
        d: `M${s.x},${sy} C${s.x},${mid} ${t.x},${mid} ${t.x},${ty}`,
        "stroke-width": (0.6 + 7 * (maxW > 0 ? e.weight / maxW : 0)).toFixed(2),
        class: e.kind === "coactivation" ? "nc-edge nc-edge-co" : "nc-edge",
      });
      const title = svg("title");
      title.textContent = `${e.source} → ${e.target}: ${formatValue(e.weight)}${e.kind ? ` (${e.kind})` : ""}`;
      path.appendChild(title);
      edgesSvg.appendChild(path);
      edges.push({ ...e, el: path });
    }
    for (const [id, p] of pos) {
      p.el = nodeTile(p);
      world.appendChild(p.el);
      placed.set(id, p);
    }
    root.dataset.nodes = String(placed.size);
    root.dataset.edges = String(edges.length);
    markSelection();
    fit();
  }

  function showMessage(text) {
    overlay.style.display = "";
    overlay.textContent = text;
  }

  // ---- hover, click, selection ------------------------------------------------------------
  function neighbourhood(id) {
    const ids = new Set([id]);
    for (const e of edges) {
      if (e.source === id) ids.add(e.target);
      if (e.target === id) ids.add(e.source);
    }
    return ids;
  }

  function hoverNode(id) {
    world.classList.toggle("nc-dim", id !== null);
    const near = id === null ? new Set() : neighbourhood(id);
    for (const [nid, p] of placed) p.el.classList.toggle("nc-hl", near.has(nid));
    for (const e of edges) e.el.classList.toggle("nc-hl", id !== null && (e.source === id || e.target === id));
    if (id === null) {
      setShared(state, { hover: [] }, ORIGIN);
      showCard(pinned);
      return;
    }
    const p = placed.get(id);
    setShared(state, { hover: members(p.node) }, ORIGIN);
    showCard(id);
  }

  function clickNode(id) {
    const p = placed.get(id);
    pinned = id;
    setShared(state, { neurons: members(p.node) }, ORIGIN);
    showCard(id);
  }

  function showCard(id) {
    clear(card);
    const p = id === null ? undefined : placed.get(id);
    if (!p) { card.style.display = "none"; return; }
    const node = p.node;
    const ids = members(node);
    card.style.display = "";
    // keep the card clear of the node: on the other side of the view
    const screenX = view.x + p.x * view.k;
    const onLeft = screenX > (viewport.clientWidth || 0) / 2;
    card.style.left = onLeft ? "8px" : "auto";
    card.style.right = onLeft ? "auto" : "8px";
    card.classList.toggle("nc-pinned", id === pinned);
    card.appendChild(h("div", { class: "nc-card-title", text: ids.length > 1 ? `${node.id} · ${ids.length} neurons` : node.id }));
    const facts = [node.layer, `count ${formatValue(node.count)}`];
    if (node.pagerank) facts.push(`PageRank ${formatValue(node.pagerank)}`);
    card.appendChild(h("div", { class: "nc-card-sub", text: facts.join(" · ") }));
    if (ids.length === 1) {
      if (sheets) {
        const g = h("div", { class: "nc-grid", style: { gridTemplateColumns: "repeat(5, 40px)" } });
        for (let r = 0; r < Math.min(10, P.count(sheets, ids[0])); r++) g.appendChild(P.patch(sheets, ids[0], r, 40));
        card.appendChild(g);
      }
    } else {
      const list = h("div", { class: "nc-members" });
      for (const i of ids.slice(0, 8)) {
        const row = h("div", { class: "nc-member" }, h("span", { class: "nc-member-id", text: index.id(i) }));
        if (sheets) for (let r = 0; r < Math.min(4, P.count(sheets, i)); r++) row.appendChild(P.patch(sheets, i, r, 30));
        list.appendChild(row);
      }
      if (ids.length > 8) list.appendChild(h("div", { class: "nc-card-sub", text: `and ${ids.length - 8} more` }));
      card.appendChild(list);
    }
    if (id === pinned && node.top_inputs && node.top_inputs.length) {
      card.appendChild(h("div", { class: "nc-card-sub nc-inputs-title", text: "top inputs" }));
      const row = h("div", { class: "nc-inputs" });
      for (const input of node.top_inputs.slice(0, 3)) {
        // a neuron id, or the id of another node of this graph (e.g. a cluster node)
        const other = placed.get(input);
        const ids = other ? members(other.node) : [index.index(input)].filter((j) => j >= 0);
        const chip = h("button", { class: "nc-chip", title: input,
          on: { click: () => { if (ids.length) setShared(state, { neurons: ids }, ORIGIN); } } });
        if (sheets && ids.length) chip.appendChild(P.patch(sheets, ids[0], 0, 28));
        chip.appendChild(h("span", { text: input }));
        row.appendChild(chip);
      }
      card.appendChild(row);
    }
  }

  function markSelection() {
    const sel = new Set(selected(state));
    const hov = new Set(state.get("origin") === ORIGIN ? [] : state.get("hover"));
    for (const p of placed.values()) {
      const ids = members(p.node);
      p.el.classList.toggle("nc-selected", ids.some((i) => sel.has(i)));
      p.el.classList.toggle("nc-ext-hover", ids.some((i) => hov.has(i)));
    }
  }

  // ---- zoom and pan ------------------------------------------------------------------------
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    const r = viewport.getBoundingClientRect();
    const mx = event.clientX - r.left, my = event.clientY - r.top;
    const k = Math.min(8, Math.max(0.1, view.k * Math.exp(-event.deltaY * 0.0015)));
    view = { k, x: mx - ((mx - view.x) * k) / view.k, y: my - ((my - view.y) * k) / view.k };
    applyView();
  }, { passive: false });
  let drag = null;
  viewport.addEventListener("pointerdown", (event) => {
    if (event.target.closest(".nc-node, .nc-gcard")) return;
    drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y, moved: false };
    viewport.setPointerCapture?.(event.pointerId);
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    view = { ...view, x: drag.vx + dx, y: drag.vy + dy };
    applyView();
  });
  viewport.addEventListener("pointerup", () => {
    if (drag && !drag.moved) { pinned = null; showCard(null); }
    drag = null;
  });

  // ---- toolbar -----------------------------------------------------------------------------
  function classPicker() {
    const c = state.get("cls");
    const wrap = h("div", { class: "nc-picker" });
    const input = h("input", { type: "search", class: "nc-search nc-class-search", placeholder: classNames[c] ?? "search classes…", title: "pick a class" });
    const list = h("div", { class: "nc-picker-list", style: { display: "none" } });
    const matches = () => {
      const q = input.value.trim().toLowerCase();
      return classNames.map((name, i) => [name, i]).filter(([name]) => name.toLowerCase().includes(q)).slice(0, 60);
    };
    const pick = (i) => { list.style.display = "none"; input.value = ""; setShared(state, { cls: i }, ORIGIN); };
    const fill = () => {
      clear(list);
      for (const [name, i] of matches()) {
        list.appendChild(h("div", { class: `nc-picker-item ${i === state.get("cls") ? "nc-on" : ""}`, text: name,
          on: { mousedown: (e) => { e.preventDefault(); pick(i); } } }));
      }
      list.style.display = list.childElementCount ? "" : "none";
    };
    input.addEventListener("focus", fill);
    input.addEventListener("input", fill);
    input.addEventListener("blur", () => { list.style.display = "none"; });
    input.addEventListener("keydown", (e) => {
      if (e.key === "Enter") { const m = matches(); if (m.length) pick(m[0][1]); }
      if (e.key === "Escape") { list.style.display = "none"; input.blur(); }
    });
    wrap.append(input, list);
    return wrap;
  }

  function slider(label, title, name, min, max, step, cls, showValue = true) {
    const value = h("span", { class: "nc-label nc-value", text: formatValue(model.get(name)) });
    const input = h("input", { type: "range", min, max, step, value: model.get(name), class: `nc-range ${cls}`, title });
    input.addEventListener("input", () => {
      value.textContent = formatValue(Number(input.value));
      model.set(name, Number(input.value));
      model.save_changes();
    });
    return h("span", { class: "nc-group", title }, h("label", { class: "nc-label", text: label }), input, showValue ? value : null);
  }

  function buildToolbar() {
    clear(toolbar);
    toolbar.appendChild(h("span", { class: "nc-title", text: model.get("kind") === "cluster" ? "Cluster graph" : "Attribution graph" }));
    const kinds = model.get("kinds") || [];
    if (kinds.length > 1) {
      toolbar.appendChild(select(kinds.map((k) => ({ value: k, label: k })), model.get("kind"), (v) => { model.set("kind", v); model.save_changes(); }, "which graph"));
    }
    if (classNames.length) toolbar.appendChild(classPicker());
    const { graph } = currentGraph();
    const maxCount = graph ? Math.max(1, ...graph.nodes.map((n) => n.count)) : 1;
    toolbar.append(slider("count ≥", "hide nodes with a smaller count", "min_count", 0, maxCount, maxCount > 50 ? 1 : maxCount / 50, "nc-min-count"),
      slider("width", "spread the layout sideways", "x_scale", 0.4, 3, 0.1, "nc-x-scale nc-small", false),
      slider("height", "spread the layers apart", "y_scale", 0.4, 3, 0.1, "nc-y-scale nc-small", false),
      h("button", { class: "nc-btn", text: "Fit", title: "fit the graph", on: { click: fit } }));
  }

  listen(state, ["change:cls"], () => { pinned = null; showCard(null); buildToolbar(); build(); }, signal);
  listen(state, ["change:neurons", "change:hover"], () => markSelection(), signal);
  listen(model, ["change:kind", "change:graphs"], () => { pinned = null; buildToolbar(); build(); }, signal);
  listen(model, ["change:min_count", "change:x_scale", "change:y_scale"], () => build(), signal);
  listen(model, ["change:height"], () => { setHeight(); fit(); }, signal);

  const resize = new ResizeObserver(() => fit());
  resize.observe(viewport);
  buildToolbar();
  build();

  const cleanup = () => { resize.disconnect(); root.remove(); };
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
