// Explorer: the views composed in one layout; they share one selection model.
import { h, listen, neuronIndex, selected } from "./util.js";

const PARTS = [
  ["sidebar", "nc-area-sidebar"],
  ["scatter", "nc-area-scatter"],
  ["graph", "nc-area-graph"],
  ["gallery", "nc-area-gallery"],
  ["chart", "nc-area-chart"],
];

export async function renderExplorer({ model, el, host, signal }) {
  const root = h("div", { class: "nc-explorer" });
  const header = h("div", { class: "nc-explorer-header" },
    h("span", { class: "nc-explorer-title", text: model.get("title") || "notebookcarto" }),
    h("span", { class: "nc-explorer-hint", text: "hover to preview · click or lasso to select · the views are linked" }));
  const grid = h("div", { class: "nc-explorer-grid" });
  root.append(header, grid);
  el.appendChild(root);
  listen(model, ["change:title"], () => { header.firstChild.textContent = model.get("title"); }, signal);
  const jobs = [];
  for (const [name, area] of PARTS) {
    const ref = model.get(name);
    if (!ref) continue;
    const slot = h("div", { class: `nc-slot ${area}`, dataset: { part: name } });
    grid.appendChild(slot);
    jobs.push(host.getWidget(ref).then((child) => child.render({ el: slot, signal })).catch((err) => {
      slot.textContent = `could not show the ${name}: ${err && err.message ? err.message : err}`;
      console.error("notebookcarto explorer:", err);
    }));
  }
  await Promise.all(jobs);
  if (host.offline && model.get("chart")) {
    await followOffline(await host.getModel(model.get("chart")), await host.getModel(model.get("state")),
      await host.getModel(model.get("data")), signal);
  }
  root.dataset.ready = "1";
  const cleanup = () => root.remove();
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}

// Colours of the class bars, as notebookcarto/views/charts.py draws them.
const PLAIN = "#9aa5b1";
const HIGHLIGHT = "#d9480f";

/** With no kernel to update the Plotly chart, restyle it here when the selection changes
 * (trace 0: the class bars, trace 1: selected neurons per layer; see charts.py). */
async function followOffline(chart, state, data, signal) {
  const index = neuronIndex(data);
  const k = (data.get("class_names") || []).length;
  const update = () => {
    const counts = index.sizes.map(() => 0);
    for (const i of selected(state)) if (i >= 0 && i < index.count) counts[index.layerOf(i)] += 1;
    const c = state.get("cls");
    const colours = Array.from({ length: k }, (_, i) => (i === c ? HIGHLIGHT : PLAIN));
    chart.set("_py2js_restyle", { restyle_data: { "marker.color": [colours] }, restyle_traces: [0] });
    chart.set("_py2js_restyle", { restyle_data: { y: [counts] }, restyle_traces: [1] });
  };
  listen(state, ["change:neurons", "change:cls"], update, signal);
}
