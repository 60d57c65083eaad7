// Detectors per layer and category (the dissection's summary()): one bar per layer, a segment
// per category; a click on a segment filters the unit table to those detectors.
import { h, svg } from "../util.js";

const BAR = { width: 180, height: 14 };

/** The summary of panel `d` (rows of the `summary` trait) in `el`. */
export function drawSummary(d, el) {
  const { model } = d;
  const rows = model.get("summary") || [];
  const categories = model.get("categories") || [];
  el.replaceChildren();
  const legend = h("div", { class: "nc-dissection-legend" },
    h("span", { class: "nc-label", text: `detectors (IoU > ${model.get("threshold")})` }),
    categories.map((name, j) => h("span", { class: "nc-legend-item" },
      h("span", { class: "nc-swatch", style: { background: d.colours[j] } }), h("span", { text: name }))));
  el.appendChild(legend);
  const most = Math.max(1, ...rows.map((r) => r.units || 0));
  for (const row of rows) {
    const bar = svg("svg", { class: "nc-bars", width: BAR.width, height: BAR.height, viewBox: `0 0 ${BAR.width} ${BAR.height}` });
    bar.appendChild(svg("rect", { class: "nc-bar-units", x: 0, y: 0, width: (BAR.width * (row.units || 0)) / most, height: BAR.height, rx: 2 }));
    let x = 0;
    categories.forEach((name, j) => {
      const count = row[`${name}_detectors`] || 0;
      const width = (BAR.width * count) / most;
      const rect = svg("rect", {
        class: "nc-bar", x, y: 0, width: Math.max(width, count ? 1 : 0), height: BAR.height, fill: d.colours[j],
        "data-layer": row.layer, "data-category": name, "data-count": count,
      });
      const title = svg("title");
      title.textContent = `${row.layer}: ${count} ${name} detectors, ${row[`${name}_unique`] || 0} concepts`;
      rect.appendChild(title);
      rect.addEventListener("click", () => d.filter({ layer: row.layer, category: name }));
      bar.appendChild(rect);
      x += width;
    });
    el.appendChild(h("div", { class: "nc-summary-row" },
      h("span", { class: "nc-summary-layer", text: row.layer, title: row.layer }), bar,
      h("span", { class: "nc-total", text: `${row.detectors} detectors · ${row.unique_concepts} concepts`,
        title: `${row.detectors} of ${row.units} units are detectors, of ${row.unique_concepts} concepts` })));
  }
}
