// The selection in the points (from the shared selection model), and the nearest neighbours of
// a single selected neuron, listed as cards.
import { array, clear, h, selected, setShared } from "../util.js";
import * as P from "../patches.js";
import { setRings } from "./overlays.js";

const CARDS = "scatter-neighbours";  // another origin than the canvas: the points follow the cards

/** The points to show selected: the selected neurons, or the selected class's point. */
export function selectedPoints(v) {
  if (v.mode() === "classes") {
    const c = v.state.get("cls");
    return c >= 0 && c < v.n ? [c] : [];
  }
  return selected(v.state).filter((i) => i >= 0 && i < v.n);
}

/** Select the points of the shared selection (without a redraw of all points). */
export function applySelection(v) {
  const pts = selectedPoints(v);
  if (pts.length) v.scatter.select(pts, { preventEvent: true });
  else if ((v.scatter.get("selectedPoints") || []).length) v.scatter.deselect({ preventEvent: true });
  updateNeighbours(v);
}

/** The k points nearest point i on screen (when no neighbours were precomputed). */
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

/** The neighbours of the one selected neuron (none for other selections), their cards (in a
 * panel over the canvas, which a button closes for this neuron) and rings. */
export function updateNeighbours(v) {
  const { state, data, n, index, sheets } = v;
  const { side } = v.dom;
  v.neighbours = [];
  const sel = v.mode() === "neurons" ? selected(state) : [];
  const table = array(data.get("neighbors"), "uint32");  // (neurons, k)
  const k = table.length ? table.shape[1] : 0;
  if (sel.length === 1 && sel[0] < n) {
    const i = sel[0];
    v.neighbours = k > 0 && table.shape[0] === n ? Array.from(table.subarray(i * k, (i + 1) * k))
      : nearest2d(v.pos, i, 10, n);
  }
  clear(side);
  const open = v.neighbours.length > 0 && v.sideClosedFor !== sel[0];
  side.style.display = open ? "" : "none";
  if (open) {
    const close = h("button", { class: "nc-side-close", type: "button", text: "×", title: "close the neighbours",
      on: { click: () => { v.sideClosedFor = sel[0]; side.style.display = "none"; } } });
    side.appendChild(h("div", { class: "nc-side-head" },
      h("div", { class: "nc-side-title", text: `Nearest neighbours of ${index.id(sel[0])}` }), close));
    side.appendChild(h("div", { class: "nc-side-sub", text: k > 0 ? "in the embedding (cosine)" : "in this 2-D projection" }));
    for (const j of v.neighbours) {
      const card = h("button", {
        class: "nc-nb-card", title: index.id(j), type: "button",
        on: {
          click: () => setShared(state, { neurons: [j] }, CARDS),
          mouseenter: () => setShared(state, { hover: [j] }, CARDS),
          mouseleave: () => setShared(state, { hover: [] }, CARDS),
        },
      });
      if (sheets) card.appendChild(P.grid(sheets, j, { n: 3, cols: 3, px: 26 }));
      card.appendChild(h("span", { class: "nc-nb-id", text: index.id(j) }));
      side.appendChild(card);
    }
  }
  setRings(v);
}
