// Drawing: one draw at a time (queued), positions, colours, filter and selection in one frame;
// snapshots and class-embedding layers animate from the drawn positions. Then the overlays,
// and the moment hover and lasso start to work.
import { clear } from "../util.js";
import { colours, drawLegend } from "./colours.js";
import { showNotes } from "./dom.js";
import { showFilter, visible } from "./filter.js";
import { placeLabels } from "./overlays.js";
import { pointRows, positions, prepare as preparePositions } from "./points.js";
import { selectedPoints, updateNeighbours } from "./selection.js";

/** Resolves in the next animation frame (or after 100 ms where frames do not run). */
function nextFrame() {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, 100);
    requestAnimationFrame(() => { clearTimeout(timer); resolve(); });
  });
}

/** Prepare positions `p` (see points.js); when their hover index is full, say so. */
export function prepare(v, p) {
  return preparePositions(v, p, (entry) => indexReady(v, entry));
}

/** Draw again after the draws already asked for; `transition` animates from the drawn
 * positions (same points only). */
export function redraw(v, transition = false) {
  v.queue = v.queue.then(() => drawNow(v, transition)).catch((err) => console.error("notebookcarto scatter:", err));
  return v.queue;
}

async function drawNow(v, transition) {
  const { model, scatter, signal } = v;
  const { root, overlay, labels } = v.dom;
  if (signal?.aborted) return;
  const p = positions(v);
  showNotes(v);
  if (!p) {
    v.n = 0;
    await scatter.clear?.();
    overlay.style.display = "";
    overlay.textContent = "No class embedding in this atlas: run the class embedding analysis (section 'class_embedding').";
    root.dataset.points = "0";
    drawLegend(v, null);
    return;
  }
  const sameCount = p.n === v.n;
  v.n = p.n;
  performance.mark("nc:scatter-prepare");
  const ready = prepare(v, p);
  v.pos = ready.pos;
  const c = colours(v);
  // the filter and the selection go into the same draw: one frame of all points, not three
  const vis = visible(v);
  const chosen = selectedPoints(v);
  performance.mark("nc:scatter-draw");
  const classes = v.mode() === "classes";
  const size = classes ? Math.max(10, model.get("point_size") * 3) : model.get("point_size");
  scatter.set({ colorBy: c.colorBy, pointColor: c.pointColor, pointSize: size,
                opacity: classes ? 0.95 : model.get("opacity") });
  // set() (here and when the scatterplot was created) asks for a redraw in its next animation
  // frame; let that frame pass first, else the points are drawn twice (a redraw of all points
  // right after the first frame)
  await nextFrame();
  if (signal?.aborted) return;
  clear(labels);
  await scatter.draw(pointRows(v.pos, c, v.n), {
    transition: transition && sameCount, transitionDuration: 750,
    zDataType: "categorical", wDataType: "continuous",
    spatialIndex: ready.index || undefined,  // else regl-scatterplot builds one before drawing
    select: chosen.length ? chosen : undefined,
    filter: vis && vis.points ? vis.points : undefined,
  });
  performance.mark("nc:scatter-drawn");
  v.drawnEntry = ready;
  drawLegend(v, c.legend);
  v.colouring = c;  // what is on screen now (the palette test hook)
  placeLabels(v);
  showFilter(v, vis);
  if (!chosen.length && (scatter.get("selectedPoints") || []).length) scatter.deselect({ preventEvent: true });
  updateNeighbours(v);
  performance.mark("nc:scatter-linked");
  if (!ready.index || ready.filled) interactive(v, ready);
  root.dataset.points = String(v.n);
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

/** The hover index of `entry` is full. */
function indexReady(v, entry) {
  if (entry !== v.prepared || entry !== v.drawnEntry) return;  // the draw still to finish says so
  if (v.scatter.get("spatialIndex") !== entry.index) {
    // this regl-scatterplot copied the index instead of viewing it: hand over the full one
    redraw(v);
    return;
  }
  interactive(v, entry);
}

/** Hover and lasso work for the drawn points from now: say so (for tests and benchmarks) and,
 * if the index came after the points, hover what is under a mouse that waited over them. */
function interactive(v, entry) {
  if (entry.announced) return;
  entry.announced = true;
  const { root, canvas } = v.dom;
  if (!root.dataset.interactive) root.dataset.interactive = performance.now().toFixed(1);
  if (entry.index && v.pointer.inside) {
    canvas.dispatchEvent(new MouseEvent("mousemove", { clientX: v.pointer.x, clientY: v.pointer.y, bubbles: true }));
  }
}
