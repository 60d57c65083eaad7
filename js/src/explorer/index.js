// Explorer: the views composed in one layout; they share one selection model. The layout follows
// the Explorer's own width (a notebook's output area, not the window): three columns, two, or
// one. The Plotly chart gets its panel's width and the theme's colours; a click on an explained
// exemplar in the gallery shows its explanation.
import { h, listen } from "../util.js";
import { followTheme } from "../theme.js";
import { followOffline, styleChart, whenPlotted } from "./chart.js";
import { followExemplars } from "./exemplars.js";

const PARTS = [
  ["sidebar", "nc-area-sidebar"],
  ["scatter", "nc-area-scatter"],
  ["graph", "nc-area-graph"],
  ["gallery", "nc-area-gallery"],
  ["chart", "nc-area-chart"],
  ["dissection", "nc-area-dissection"],
  ["explanation", "nc-area-explanation"],
];
// the narrowest Explorer width of each layout (px); below the last: one column
const LAYOUTS = [["wide", 1180], ["medium", 760], ["narrow", 0]];

export function layoutFor(width) {
  return LAYOUTS.find(([, min]) => width >= min)[0];
}

export async function renderExplorer({ model, el, host, signal }) {
  const root = h("div", { class: "nc-explorer", dataset: { layout: "wide" } });
  const header = h("div", { class: "nc-explorer-header" },
    h("span", { class: "nc-explorer-title", text: model.get("title") || "notebookcarto" }),
    h("span", { class: "nc-explorer-hint", text: "hover to preview · click or lasso to select · the views are linked · Ctrl + scroll (or click a view first) to zoom" }));
  const grid = h("div", { class: "nc-explorer-grid" });
  root.append(header, grid);
  el.appendChild(root);
  listen(model, ["change:title"], () => { header.firstChild.textContent = model.get("title"); }, signal);
  const lay = () => {
    const next = layoutFor(root.clientWidth || el.clientWidth || 1200);
    if (root.dataset.layout !== next) root.dataset.layout = next;
  };
  lay();
  let theme = null;
  let styled = null;  // styles the chart once it is drawn
  followTheme(el, (next) => { theme = next; styled?.(); }, signal);
  const sized = new ResizeObserver(lay);
  sized.observe(root);
  signal?.addEventListener("abort", () => sized.disconnect());

  const jobs = [];
  const slots = {};
  for (const [name, area] of PARTS) {
    const ref = model.get(name);
    if (!ref) continue;
    const slot = h("div", { class: `nc-slot ${area}`, dataset: { part: name } });
    slots[name] = slot;
    grid.appendChild(slot);
    jobs.push(host.getWidget(ref).then((child) => child.render({ el: slot, signal })).catch((err) => {
      slot.textContent = `could not show the ${name}: ${err && err.message ? err.message : err}`;
      console.error("notebookcarto explorer:", err);
    }));
  }
  await Promise.all(jobs);
  if (slots.gallery && slots.explanation) {
    followExemplars(slots.gallery, await host.getModel(model.get("explanation")), slots.explanation, signal);
  }
  if (model.get("chart") && slots.chart) {
    const chart = await host.getModel(model.get("chart"));
    if (await whenPlotted(slots.chart, signal)) {
      if (host.offline) {
        await followOffline(chart, slots.chart, await host.getModel(model.get("state")),
          await host.getModel(model.get("data")), signal);
      }
      styled = () => styleChart(chart, slots.chart, theme);
      styled();
      const fitted = new ResizeObserver(styled);
      fitted.observe(slots.chart);
      signal?.addEventListener("abort", () => fitted.disconnect());
    }
  }
  root.dataset.ready = "1";
  // for tests and scripts
  root.ncExplorer = { layout: () => root.dataset.layout, parts: () => Object.keys(slots) };
  const cleanup = () => root.remove();
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
