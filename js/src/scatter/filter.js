// Which neurons are shown: all, those of the selected class, or those of the selected clusters.
import { array, selected } from "../util.js";

/** The points the filter keeps: null (no filter), or {points (null: nothing to filter by
 * yet), why (the hint or the empty-view message)}. */
export function visible(v) {
  if (v.mode() === "classes") return null;
  const { state, data, clusters, n } = v;
  const f = v.model.get("filter");
  if (f === "class") {
    const c = state.get("cls");
    if (c < 0) return { points: null, why: "select a class to show its neurons" };
    const ptr = array(data.get("rel_indptr"), "uint32");
    if (c + 1 >= ptr.length) return { points: [], why: "this atlas has no class statistics" };
    const idx = array(data.get("rel_index"), "uint32");
    return { points: Array.from(idx.subarray(ptr[c], ptr[c + 1])), why: `no neuron counts for ${v.classNames[c]}` };
  }
  if (f === "clusters") {
    if (clusters.length !== n) return { points: [], why: "this atlas has no clusters" };
    const chosen = new Set();
    for (const i of selected(state)) if (clusters[i] >= 0) chosen.add(clusters[i]);
    if (!chosen.size) return { points: null, why: "select a neuron of a cluster (or a cluster in the graph) to show its cluster" };
    const pts = [];
    for (let i = 0; i < n; i++) if (chosen.has(clusters[i])) pts.push(i);
    return { points: pts, why: "" };
  }
  return null;
}

/** The filter's hint, overlay and counts for visible() `vis` (the points follow separately). */
export function showFilter(v, vis) {
  const { hint, overlay, root } = v.dom;
  hint.textContent = vis && !vis.points ? vis.why : "";
  hint.style.display = vis && !vis.points ? "" : "none";
  const shown = vis && vis.points ? vis.points.length : v.n;
  root.dataset.visible = String(shown);
  overlay.style.display = vis && vis.points && !shown ? "" : "none";
  overlay.textContent = vis && vis.points && !shown ? vis.why : "";
}

/** Filter the drawn points (without a full redraw). */
export function applyFilter(v) {
  const vis = visible(v);
  showFilter(v, vis);
  // no filter, or nothing chosen yet to filter by: show all (unfiltering rebuilds the point
  // index buffer and redraws, so only when something is filtered)
  if (!vis || !vis.points) {
    if (v.scatter.get("isPointsFiltered")) v.scatter.unfilter({ preventEvent: true });
  } else {
    v.scatter.filter(vis.points, { preventEvent: true });
  }
}
