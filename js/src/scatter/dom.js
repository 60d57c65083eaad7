// The scatter's elements, its height and its notes. Everything that opens over the points (the
// neighbour panel, the legend, the search results, cards and hints) lies over the canvas: the
// canvas keeps its size, so no point moves when a panel opens.
import { fillNotes, h } from "../util.js";

/** The view's elements, appended to `el`: toolbar, canvas with its overlays, notes. */
export function createDom(el) {
  const dom = {
    root: h("div", { class: "nc-view nc-scatter" }),
    toolbar: h("div", { class: "nc-toolbar" }),
    wrap: h("div", { class: "nc-canvas-wrap" }),
    canvas: h("canvas", { class: "nc-canvas" }),
    rings: h("div", { class: "nc-rings" }),
    labels: h("div", { class: "nc-rings nc-labels" }),
    legend: h("div", { class: "nc-legend" }),
    card: h("div", { class: "nc-card", style: { display: "none" } }),
    overlay: h("div", { class: "nc-overlay", style: { display: "none" } }),
    hint: h("div", { class: "nc-hint", style: { display: "none" } }),
    side: h("div", { class: "nc-side", style: { display: "none" } }),
    results: h("div", { class: "nc-search-results", style: { display: "none" } }),
    notes: h("div", { class: "nc-notes" }),
  };
  dom.wrap.append(dom.canvas, dom.labels, dom.rings, dom.legend, dom.hint, dom.side, dom.card,
    dom.overlay, dom.results);
  dom.root.append(dom.toolbar, h("div", { class: "nc-body" }, dom.wrap), dom.notes);
  el.appendChild(dom.root);
  return dom;
}

export function setHeight(v) {
  const height = v.model.get("height");
  v.dom.root.style.height = height > 0 ? `${height}px` : "";
}

/** The view's notes (and the missing patches), redrawn only when they change: the notes take
 * their room before the canvas size is read, so the layout does not change (and a million
 * points are not drawn again) once the points are on screen. */
export function showNotes(v) {
  const texts = [...(v.model.get("notes") || [])];
  if (!v.sheets) texts.push((v.data.get("notes") || {}).patches || "no example patches");
  const key = JSON.stringify(texts);
  if (key !== v.shownNotes) { v.shownNotes = key; fillNotes(v.dom.notes, texts); }
}
