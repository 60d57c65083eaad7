// The hover card: the neuron's id, layer, cluster, concept and residual stream with a 3x3 grid
// of its example patches (a class's name and accuracy in the class embedding), next to the mouse.
import { array, clear, h, pct, streamName } from "../util.js";
import * as P from "../patches.js";

/** Follow the mouse over the canvas (the card stays next to it). */
export function trackMouse(v) {
  const { wrap, card } = v.dom;
  wrap.addEventListener("mousemove", (event) => {
    const r = wrap.getBoundingClientRect();
    v.mouse = [event.clientX - r.left, event.clientY - r.top];
    Object.assign(v.pointer, { x: event.clientX, y: event.clientY, inside: true });
    if (card.style.display !== "none") placeCard(v);
  });
  wrap.addEventListener("mouseleave", () => { v.pointer.inside = false; });
}

function placeCard(v) {
  const { card, wrap } = v.dom;
  const [mx, my] = v.mouse;
  const w = card.offsetWidth, hgt = card.offsetHeight;
  const W = wrap.clientWidth, H = wrap.clientHeight;
  let x = mx + 14, y = my + 14;
  if (x + w > W) x = Math.max(0, mx - w - 14);
  if (y + hgt > H) y = Math.max(0, my - hgt - 14);
  card.style.left = `${x}px`; card.style.top = `${y}px`;
}

export function showCard(v, i) {
  const { card, root } = v.dom;
  const { index, clusters, concepts, n, sheets } = v;
  clear(card);
  if (v.mode() === "classes") {
    const acc = array(v.model.get("class_accuracy"), "float32");
    card.append(h("div", { class: "nc-card-title", text: v.classNames[i] ?? `class ${i}` }),
      h("div", { class: "nc-card-sub", text: acc.length ? `accuracy ${pct(acc[i])}` : "" }));
  } else {
    const parts = [index.layers[index.layerOf(i)]];
    if (clusters.length === n && clusters[i] >= 0) parts.push(`cluster ${clusters[i]}`);
    if (concepts.length === n && concepts[i] >= 0) parts.push(v.conceptNames[concepts[i]] ?? "");
    const stream = streamName(v.data, i);
    if (stream) parts.push(`stream ${stream}`);
    card.append(h("div", { class: "nc-card-title", text: index.id(i) }),
      h("div", { class: "nc-card-sub", text: parts.join(" · ") }));
    if (sheets) card.appendChild(P.grid(sheets, i, { n: 9, cols: 3, px: 44 }));
    else card.appendChild(h("div", { class: "nc-card-sub", text: "no example patches in this atlas" }));
  }
  card.style.display = "";
  placeCard(v);
  root.dataset.hoverAt = performance.now().toFixed(1);
}

export function hideCard(v) {
  v.dom.card.style.display = "none";
}
