// Hover greys out all but a node's neighbourhood and shows its card; click selects its neurons
// and pins the card; nodes show the shared selection and what other views hover.
import { selected, setShared } from "../util.js";
import { members, showCard } from "./card.js";

const ORIGIN = "graph";

/** The node and the nodes it shares an edge with. */
function neighbourhood(g, id) {
  const ids = new Set([id]);
  for (const e of g.edges) {
    if (e.source === id) ids.add(e.target);
    if (e.target === id) ids.add(e.source);
  }
  return ids;
}

/** Hover node `id` (null: none). */
export function hoverNode(g, id) {
  g.dom.world.classList.toggle("nc-dim", id !== null);
  const near = id === null ? new Set() : neighbourhood(g, id);
  for (const [nid, p] of g.placed) p.el.classList.toggle("nc-hl", near.has(nid));
  for (const e of g.edges) e.el.classList.toggle("nc-hl", id !== null && (e.source === id || e.target === id));
  if (id === null) {
    setShared(g.state, { hover: [] }, ORIGIN);
    showCard(g, g.pinned);
    return;
  }
  setShared(g.state, { hover: members(g, g.placed.get(id).node) }, ORIGIN);
  showCard(g, id);
}

/** Unpin the card (its node's graph or selection is gone). */
export function unpin(g) {
  if (g.pinned === null) return;
  g.pinned = null;
  showCard(g, null);
}

/** The selection changed: a pinned card stays only while its node's neurons are the selection
 * (a lasso or a click elsewhere unpins it). */
export function followSelection(g) {
  if (g.pinned !== null && g.state.get("origin") !== ORIGIN) {
    const p = g.placed.get(g.pinned);
    const want = p ? members(g, p.node) : [];
    const now = selected(g.state);
    if (want.length !== now.length || want.some((i, j) => i !== now[j])) unpin(g);
  }
  markSelection(g);
}

export function clickNode(g, id) {
  g.pinned = id;
  setShared(g.state, { neurons: members(g, g.placed.get(id).node) }, ORIGIN);
  showCard(g, id);
}

/** Mark the nodes that hold selected neurons, and those hovered in another view. */
export function markSelection(g) {
  const sel = new Set(selected(g.state));
  const hov = new Set(g.state.get("origin") === ORIGIN ? [] : g.state.get("hover"));
  for (const p of g.placed.values()) {
    const ids = members(g, p.node);
    p.el.classList.toggle("nc-selected", ids.some((i) => sel.has(i)));
    p.el.classList.toggle("nc-ext-hover", ids.some((i) => hov.has(i)));
  }
}
