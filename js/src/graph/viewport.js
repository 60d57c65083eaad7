// Zoom (wheel, when the user works in the view: see wheel.js) and pan (drag) of the graph; the
// readable view it opens in, "fit" to see all of it; the layer labels follow the rows at their
// own size; a click on the background unpins the card.
import { guardWheel } from "../wheel.js";
import { LABELS_PX, fitView, readableView } from "./layout.js";

const LABEL_WIDTH = LABELS_PX - 6;  // .nc-layer-label's width (widget.css)
import { showCard } from "./card.js";

export function applyView(g) {
  const { x, y, k } = g.view;
  g.dom.world.style.transform = `translate(${x}px, ${y}px) scale(${k})`;
  // each layer's name left of its row, or at the viewport's left edge when the row starts there
  for (const label of g.dom.labels.children) {
    label.style.top = `${y + Number(label.dataset.y) * k}px`;
    label.style.left = `${Math.max(4, x + Number(label.dataset.x) * k - LABEL_WIDTH - 8)}px`;
  }
}

function size(g) {
  const { viewport } = g.dom;
  return [viewport.clientWidth || 600, viewport.clientHeight || 400];
}

/** Show all of the graph. */
export function fit(g) {
  const view = fitView(g.placed, ...size(g));
  if (!view) return;
  g.view = view;
  g.moved = true;  // the user chose this view: a resize keeps it
  applyView(g);
}

/** The view the graph opens in (readableView). */
export function resetView(g) {
  const view = readableView(g.placed, ...size(g));
  if (!view) return;
  g.view = view;
  g.moved = false;
  applyView(g);
}

export function zoomAndPan(g, signal) {
  const { viewport } = g.dom;
  guardWheel(viewport, viewport, signal);
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    const r = viewport.getBoundingClientRect();
    const mx = event.clientX - r.left, my = event.clientY - r.top;
    const view = g.view;
    const k = Math.min(8, Math.max(0.1, view.k * Math.exp(-event.deltaY * 0.0015)));
    g.view = { k, x: mx - ((mx - view.x) * k) / view.k, y: my - ((my - view.y) * k) / view.k };
    g.moved = true;
    applyView(g);
  }, { passive: false, signal });
  let drag = null;
  viewport.addEventListener("pointerdown", (event) => {
    if (event.target.closest(".nc-node, .nc-gcard")) return;
    drag = { x: event.clientX, y: event.clientY, vx: g.view.x, vy: g.view.y, moved: false };
    viewport.setPointerCapture?.(event.pointerId);
  }, { signal });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    g.view = { ...g.view, x: drag.vx + dx, y: drag.vy + dy };
    if (drag.moved) g.moved = true;
    applyView(g);
  }, { signal });
  viewport.addEventListener("pointerup", () => {
    if (drag && !drag.moved) { g.pinned = null; showCard(g, null); }
    drag = null;
  }, { signal });
}
