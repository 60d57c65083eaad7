// A small SVG histogram: the probability the model gave the true class, 0 to 1.
import { svg } from "../util.js";

export function histogram(values, width = 64, height = 18) {
  const el = svg("svg", { class: "nc-hist", width, height, viewBox: `0 0 ${width} ${height}` });
  const n = values.length;
  const top = Math.max(...values, 1e-9);
  const w = width / n;
  for (let i = 0; i < n; i++) {
    const bh = Math.max((values[i] / top) * (height - 1), values[i] > 0 ? 1 : 0);
    el.appendChild(svg("rect", { x: (i * w + 0.5).toFixed(2), y: (height - bh).toFixed(2), width: Math.max(w - 1, 1).toFixed(2), height: bh.toFixed(2),
      class: i >= n / 2 ? "nc-hist-hi" : "nc-hist-lo" }));
  }
  const title = svg("title");
  title.textContent = "predicted probability of the true class, 0 to 1";
  el.appendChild(title);
  return el;
}
