// ProjectionScatter: neurons (or classes) as WebGL points, linked through the shared selection.
// The options and the selection live in the models (the view's traits, the shared selection);
// `v` holds what this view draws from them: its elements, the scatterplot and the drawn points.
import createScatterplot from "regl-scatterplot";
import { array, neuronIndex } from "../util.js";
import * as P from "../patches.js";
import { followTheme } from "../theme.js";
import { guardWheel } from "../wheel.js";
import { trackMouse } from "./card.js";
import { createDom, setHeight, showNotes } from "./dom.js";
import { prepare, redraw } from "./draw.js";
import { followModels, followPoints, guardClicks } from "./events.js";
import { placeLabels, placeRings } from "./overlays.js";
import { positions } from "./points.js";
import { applyTool, buildToolbar } from "./toolbar.js";

/** The scatterplot's colours in `theme`: background, selected and hovered points, reticle,
 * lasso. */
function themed(theme) {
  return theme.dark
    ? { backgroundColor: theme.background, pointColorActive: "#ff8a4c", pointColorHover: "#f1f3f5",
        reticleColor: [0.85, 0.87, 0.9, 0.3], lassoColor: "#8ea2ff" }
    : { backgroundColor: theme.background, pointColorActive: "#d9480f", pointColorHover: "#212529",
        reticleColor: [0.3, 0.3, 0.3, 0.35], lassoColor: "#3b5bdb" };
}

/** The scatterplot (regl-scatterplot) on `canvas`; very large projections draw square points
 * without alpha blending, several times faster. */
function scatterplot(v, size) {
  return createScatterplot({
    canvas: v.dom.canvas,
    performanceMode: v.index.count >= 500000,
    width: size[0],
    height: size[1],
    ...themed(v.theme()),
    pointSize: v.model.get("point_size"),
    opacity: v.model.get("opacity"),
    pointOutlineWidth: 2,
    pointSizeSelected: 2,
    showReticle: true,
    lassoInitiator: false,
    lassoInitiatorParentElement: v.dom.wrap,
    lassoLongPressIndicatorParentElement: v.dom.wrap,
    deselectOnDblClick: true,
    deselectOnEscape: true,
    spatialIndexUseWorker: false,
    syncEvents: true, // hover cards appear in the same task as the mouse move, not after a frame
  });
}

const wrapSize = (wrap) => [Math.max(wrap.clientWidth, 10), Math.max(wrap.clientHeight, 10)];

export async function renderScatter({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const v = {
    model, state, data, signal,
    mode: () => model.get("mode"),
    index: neuronIndex(data),
    classNames: data.get("class_names") || [],
    sheets: P.sheets(data),
    clusters: array(data.get("cluster"), "int32"),
    concepts: array(data.get("concept"), "int32"),
    conceptNames: data.get("concept_names") || [],
    dom: createDom(el),
    scatter: null,          // created once the layout is final
    n: 0,                   // drawn points
    pos: { x: new Float32Array(0), y: new Float32Array(0) },  // their normalised positions
    prepared: null,         // the last prepared positions (points.js)
    drawnEntry: null,       // the prepared positions of the last finished draw
    queue: Promise.resolve(),  // draws, one after the other
    pointer: { x: 0, y: 0, inside: false },  // the mouse over the canvas (client coordinates)
    mouse: [0, 0],          // the mouse in the canvas (for the hover card)
    localHover: -1,         // the point under the mouse here: its cluster is highlighted
    neighbours: [],         // of the one selected neuron
    ringed: [],             // [point, ring class]
    shownNotes: null,
    legendFolded: false,    // the user folded the legend
    sideClosedFor: -1,      // the neuron whose neighbour panel the user closed
    colouring: null,        // the last colours() (for the palette hook)
    theme: null,            // the current theme (theme.js)
  };
  const { root, wrap } = v.dom;
  v.theme = followTheme(el, (theme) => {
    if (!v.scatter) return;
    v.scatter.set(themed(theme));
    redraw(v);  // the palettes follow the theme
  }, signal);
  setHeight(v);
  // the notes and the toolbar take their room before the canvas size is read
  showNotes(v);
  buildToolbar(v);
  const initial = positions(v);
  if (initial) prepare(v, initial);  // a large hover index starts building before the first draw

  let size = wrapSize(wrap);
  v.scatter = scatterplot(v, size);
  root.dataset.points = "0";
  trackMouse(v);
  guardWheel(wrap, wrap, signal);
  guardClicks(v);
  followPoints(v);
  followModels(v);

  const resize = new ResizeObserver(() => {
    const next = wrapSize(wrap);
    if (next[0] === size[0] && next[1] === size[1]) return;  // a redraw of 1M points is not free
    size = next;
    v.scatter.set({ width: next[0], height: next[1] });
    placeRings(v);
    placeLabels(v);
  });
  resize.observe(wrap);

  // for tests and scripts: where a point is on screen, what is selected and shown
  root.ncScatter = {
    position: (i) => { try { return v.scatter.getScreenPosition(i); } catch { return undefined; } },
    selected: () => Array.from(v.scatter.get("selectedPoints") || []),
    filtered: () => Array.from(v.scatter.get("filteredPoints") || []),
    neighbours: () => v.neighbours.slice(),
    spatialIndex: () => v.scatter.get("spatialIndex"),  // the hover/lasso index (KDBush buffer)
    palette: () => ({ by: v.colouring?.by, points: (v.colouring?.pointColor || []).slice(), background: v.theme().background }),
  };

  applyTool(v);
  await redraw(v);

  const cleanup = () => {
    resize.disconnect();
    try { v.scatter.destroy(); } catch { /* already gone */ }
    root.remove();
  };
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
