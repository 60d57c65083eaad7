// Explorer: the views composed in one layout; they share one selection model.
import { h, listen } from "../util.js";
import { followOffline } from "./offline-chart.js";

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
