// Elements placed over the canvas at points: rings (neighbours, hovered neurons, the hovered
// point's cluster) and the class names of the class embedding.
import { clear, h } from "../util.js";

const ORIGIN = "scatter";

function screen(v, i) {
  try { return v.scatter.getScreenPosition(i); } catch { return undefined; }
}

/** Draw the rings where their points are now (after a zoom, pan or animation too). */
export function placeRings(v) {
  const { rings } = v.dom;
  clear(rings);
  for (const [i, cls] of v.ringed) {
    const p = screen(v, i);
    if (!p) continue;
    rings.appendChild(h("div", { class: `nc-ring ${cls}`, style: { left: `${p[0]}px`, top: `${p[1]}px` } }));
  }
}

/** Which points get rings: the neighbours of the selected neuron, neurons hovered in other
 * views, and the cluster of the point under the mouse here. */
export function setRings(v) {
  const { state, n, clusters } = v;
  const hov = state.get("origin") === ORIGIN ? [] : state.get("hover");
  v.ringed = v.neighbours.map((j) => [j, "nc-ring-nb"]);
  if (v.mode() === "neurons") {
    for (const i of hov.slice(0, 500)) if (i < n) v.ringed.push([i, "nc-ring-hover"]);
    const c = v.localHover >= 0 && clusters.length === n ? clusters[v.localHover] : -1;
    if (c >= 0) {
      let shown = 0;
      for (let j = 0; j < n && shown < 300; j++) {
        if (clusters[j] === c && j !== v.localHover) { v.ringed.push([j, "nc-ring-cluster"]); shown++; }
      }
    }
  }
  placeRings(v);
}

/** Class names next to the points of the class embedding (few classes only). */
export function placeLabels(v) {
  const { labels } = v.dom;
  clear(labels);
  if (v.mode() !== "classes" || v.n > 40) return;
  for (let i = 0; i < v.n; i++) {
    const p = screen(v, i);
    if (!p) continue;
    labels.appendChild(h("div", { class: "nc-point-label", text: v.classNames[i] ?? String(i), style: { left: `${p[0] + 7}px`, top: `${p[1] - 7}px` } }));
  }
}
