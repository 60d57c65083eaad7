// Zoom (wheel) and pan (drag) of the graph, and "fit"; a click on the background unpins the card.
import { fitView } from "./layout.js";
import { showCard } from "./card.js";

export function applyView(g) {
  const { x, y, k } = g.view;
  g.dom.world.style.transform = `translate(${x}px, ${y}px) scale(${k})`;
}

export function fit(g) {
  const { viewport } = g.dom;
  const view = fitView(g.placed, viewport.clientWidth || 600, viewport.clientHeight || 400);
  if (!view) return;
  g.view = view;
  applyView(g);
}

export function zoomAndPan(g) {
  const { viewport } = g.dom;
  viewport.addEventListener("wheel", (event) => {
    event.preventDefault();
    const r = viewport.getBoundingClientRect();
    const mx = event.clientX - r.left, my = event.clientY - r.top;
    const view = g.view;
    const k = Math.min(8, Math.max(0.1, view.k * Math.exp(-event.deltaY * 0.0015)));
    g.view = { k, x: mx - ((mx - view.x) * k) / view.k, y: my - ((my - view.y) * k) / view.k };
    applyView(g);
  }, { passive: false });
  let drag = null;
  viewport.addEventListener("pointerdown", (event) => {
    if (event.target.closest(".nc-node, .nc-gcard")) return;
    drag = { x: event.clientX, y: event.clientY, vx: g.view.x, vy: g.view.y, moved: false };
    viewport.setPointerCapture?.(event.pointerId);
  });
  viewport.addEventListener("pointermove", (event) => {
    if (!drag) return;
    const dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
    g.view = { ...g.view, x: drag.vx + dx, y: drag.vy + dy };
    applyView(g);
  });
  viewport.addEventListener("pointerup", () => {
    if (drag && !drag.moved) { g.pinned = null; showCard(g, null); }
    drag = null;
  });
}
