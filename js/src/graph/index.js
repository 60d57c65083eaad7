// AttributionGraph: Summit's attribution graph / NeuroCartography's cluster graph of one class.
// The options, the class and the selection live in the models; `g` holds what this view shows:
// its elements, the placed nodes and edges, the pinned node and the zoom.
import { DEPTH_STOPS, h, listen, neuronIndex, ramp, svg } from "../util.js";
import * as P from "../patches.js";
import { showCard } from "./card.js";
import { build } from "./draw.js";
import { markSelection } from "./interaction.js";
import { buildToolbar } from "./toolbar.js";
import { fit, zoomAndPan } from "./viewport.js";

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
  };
  dom.world.append(dom.edgesSvg, dom.labels);
  dom.viewport.append(dom.world, dom.card, dom.overlay);
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
    layerColours: ramp(DEPTH_STOPS, Math.max(index.layers.length, 1)),
    dom: createDom(el),
    placed: new Map(),  // id -> {x, y, size, node, layer, el}
    edges: [],          // {source, target, weight, kind, el}
    pinned: null,       // the clicked node: its card stays
    view: { x: 0, y: 0, k: 1 },
  };
  const setHeight = () => { g.dom.root.style.height = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();
  zoomAndPan(g);

  const unpin = () => { g.pinned = null; showCard(g, null); };
  listen(state, ["change:cls"], () => { unpin(); buildToolbar(g); build(g); }, signal);
  listen(state, ["change:neurons", "change:hover"], () => markSelection(g), signal);
  listen(model, ["change:kind", "change:graphs"], () => { g.pinned = null; buildToolbar(g); build(g); }, signal);
  listen(model, ["change:min_count", "change:x_scale", "change:y_scale"], () => build(g), signal);
  listen(model, ["change:height"], () => { setHeight(); fit(g); }, signal);

  const resize = new ResizeObserver(() => fit(g));
  resize.observe(g.dom.viewport);
  buildToolbar(g);
  build(g);

  const cleanup = () => { resize.disconnect(); g.dom.root.remove(); };
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
