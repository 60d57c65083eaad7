// What the view does when the points are hovered, selected or moved, and when the shared
// selection or the view's traits change.
import { listen, setShared } from "../util.js";
import { hideCard, showCard } from "./card.js";
import { setHeight } from "./dom.js";
import { redraw } from "./draw.js";
import { applyFilter } from "./filter.js";
import { placeLabels, placeRings, setRings } from "./overlays.js";
import { applySelection, updateNeighbours } from "./selection.js";
import { applyTool, buildToolbar } from "./toolbar.js";

const ORIGIN = "scatter";
const CLICK_SLOP = 6;  // px the mouse may travel for a press to count as a click

/** A press that travelled (a lasso, a pan) is not a click, even where it ends near its start:
 * regl-scatterplot would take the click that follows it for a click on the point there. */
export function guardClicks(v) {
  const { wrap } = v.dom;
  let press = null;
  const options = { capture: true, signal: v.signal };
  wrap.addEventListener("pointerdown", (event) => { press = { x: event.clientX, y: event.clientY, path: 0 }; }, options);
  window.addEventListener("pointermove", (event) => {
    if (!press) return;
    press.path += Math.hypot(event.clientX - press.x, event.clientY - press.y);
    press.x = event.clientX; press.y = event.clientY;
  }, options);
  wrap.addEventListener("click", (event) => {
    const travelled = press && press.path > CLICK_SLOP;
    press = null;
    if (travelled) { event.stopPropagation(); event.preventDefault(); }
  }, options);
}

/** Hover, selection and view events of the scatterplot -> the shared selection. */
export function followPoints(v) {
  const { scatter, state } = v;
  const neurons = () => v.mode() === "neurons";
  scatter.subscribe("pointOver", (i) => {
    showCard(v, i);
    v.localHover = neurons() ? i : -1;
    if (neurons()) setShared(state, { hover: [i] }, ORIGIN);
    setRings(v);
  });
  scatter.subscribe("pointOut", () => {
    hideCard(v);
    v.localHover = -1;
    if (neurons()) setShared(state, { hover: [] }, ORIGIN);
    setRings(v);
  });
  scatter.subscribe("select", ({ points }) => {
    if (!neurons()) {
      if (points.length) setShared(state, { cls: points[0] }, ORIGIN);
    } else {
      setShared(state, { neurons: Array.from(points) }, ORIGIN);
    }
    updateNeighbours(v);
  });
  scatter.subscribe("deselect", () => {
    if (neurons()) setShared(state, { neurons: [] }, ORIGIN);
    updateNeighbours(v);
  });
  scatter.subscribe("transitionEnd", () => { placeRings(v); placeLabels(v); });
  scatter.subscribe("view", () => { placeRings(v); placeLabels(v); });
}

/** The shared selection and the view's traits -> the points. */
export function followModels(v) {
  const { model, state, signal } = v;
  listen(state, ["change:neurons"], () => {
    if (state.get("origin") !== ORIGIN) applySelection(v);
    else updateNeighbours(v);
    if (model.get("filter") === "clusters") applyFilter(v);
  }, signal);
  listen(state, ["change:hover"], () => setRings(v), signal);
  listen(state, ["change:cls"], () => {
    if (v.mode() === "classes") applySelection(v);
    else if (model.get("color_by") === "class relevance") redraw(v);
    else if (model.get("filter") === "class") applyFilter(v);
  }, signal);
  listen(model, ["change:color_by", "change:mode", "change:point_size", "change:opacity", "change:xy"], () => { buildToolbar(v); redraw(v); }, signal);
  listen(model, ["change:filter"], () => { buildToolbar(v); applyFilter(v); }, signal);
  listen(model, ["change:snapshot", "change:class_layer"], () => { buildToolbar(v); redraw(v, true); }, signal);
  listen(model, ["change:tool"], () => { buildToolbar(v); applyTool(v); }, signal);
  listen(model, ["change:height"], () => setHeight(v), signal);
}
