// AttributionGraph: Summit's attribution graph / NeuroCartography's cluster graph of one class.
// The options, the class and the selection live in the models; `g` holds what this view shows:
// its elements, the placed nodes and edges, the pinned node and the zoom.
import { array, h, listen, neuronIndex, svg } from "../util.js";
import * as P from "../patches.js";
import { distinctColours } from "../palettes.js";
import { followTheme } from "../theme.js";
import { build } from "./draw.js";
import { followSelection, markSelection, unpin } from "./interaction.js";
import { buildToolbar } from "./toolbar.js";
import { applyView, resetView, zoomAndPan } from "./viewport.js";

function createDom(el) {
  const dom = {
    root: h("div", { class: "nc-view nc-graph" }),
    toolbar: h("div", { class: "nc-toolbar" }),
    viewport: h("div", { class: "nc-viewport" }),
    world: h("div", { class: "nc-world" }),
    edgesSvg: svg("svg", { class: "nc-edges" }),
    labels: h("div", { class: "nc-layer-labels" }),
    card: h("div", { class: "nc-gcard", style: { display: "none" } }),
    overlay: h("div", { class: "nc-overlay", style: { display: "none" } }),
    notes: h("div", { class: "nc-notes" }),
    count: null,  // the toolbar's count of the nodes drawn (graphs the default view prunes)
  };
  dom.world.append(dom.edgesSvg);
  dom.viewport.append(dom.world, dom.labels, dom.card, dom.overlay);
  dom.root.append(dom.toolbar, dom.viewport, dom.notes);
  el.appendChild(dom.root);
  return dom;
}

export async function renderGraph({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const index = neuronIndex(data);
  const g = {
    model, state, data, index,
    classNames: data.get("class_names") || [],
    sheets: P.sheets(data),
    visuals: P.visuals(data),  // feature visualisations, or null
    concepts: array(data.get("concept"), "int32"),
    conceptNames: data.get("concept_names") || [],
    conceptSource: (data.get("concept_source") || "").split(":")[0],
    layerColours: [],
    dom: createDom(el),
    placed: new Map(),  // id -> {x, y, size, node, layer, el}
    edges: [],          // {source, target, weight, kind, el}
    pinned: null,       // the clicked node: its card stays
    view: { x: 0, y: 0, k: 1 },
    moved: false,       // the user zoomed or panned (a resize keeps that view)
  };
  const setHeight = () => { g.dom.root.style.height = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();
  zoomAndPan(g, signal);
  followTheme(el, (theme) => {
    g.layerColours = distinctColours(Math.max(index.layers.length, 1), theme.dark);
    for (const p of g.placed.values()) {
      p.el.style.borderColor = g.layerColours[index.layers.indexOf(p.node.layer)] || "";
    }
  }, signal);

  listen(state, ["change:cls"], () => { unpin(g); buildToolbar(g); build(g); }, signal);
  listen(state, ["change:neurons"], () => followSelection(g), signal);
  listen(state, ["change:hover"], () => markSelection(g), signal);
  listen(model, ["change:kind", "change:graphs"], () => { unpin(g); buildToolbar(g); build(g); }, signal);
  listen(model, ["change:min_count", "change:x_scale", "change:y_scale"], () => build(g, { keepView: true }), signal);
  listen(model, ["change:tiles", "change:show_all"], () => { buildToolbar(g); build(g, { keepView: true }); }, signal);
  listen(model, ["change:height"], () => { setHeight(); resetView(g); }, signal);

  let size = [0, 0];
  const resize = new ResizeObserver(() => {
    const next = [g.dom.viewport.clientWidth, g.dom.viewport.clientHeight];
    if (next[0] === size[0] && next[1] === size[1]) return;
    size = next;
    if (g.moved) applyView(g); else resetView(g);
  });
  resize.observe(g.dom.viewport);
  buildToolbar(g);
  build(g);

  // for tests and scripts: the zoom and the pinned node
  g.dom.root.ncGraph = { view: () => ({ ...g.view }), pinned: () => g.pinned };
  const cleanup = () => { resize.disconnect(); g.dom.root.remove(); };
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
