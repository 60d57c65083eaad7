// PatchGallery: example patches of the selected (or hovered) neurons, values underneath, after
// their feature visualisations (and a selected cluster's) when the atlas has them; the
// selection as a CSV file.
import { array, clear, h, listen, message, neuronIndex, note, selected, setShared } from "../util.js";
import * as P from "../patches.js";
import { download, toCsv } from "../csv.js";
import { relevance } from "../relevance.js";

/** The selected neurons as CSV: id, layer, channel, cluster, concept, IoU and the relevance
 * (Summit's A, scaled per layer) for the selected class, as far as the atlas has them. */
export function selectionCsv(state, data, index) {
  const chosen = selected(state);
  const clusters = array(data.get("cluster"), "int32");
  const concepts = array(data.get("concept"), "int32");
  const names = data.get("concept_names") || [];
  const iou = array(data.get("iou"), "float32");
  const classes = data.get("class_names") || [];
  const c = state.get("cls");
  const header = ["neuron", "layer", "channel"];
  if (clusters.length === index.count) header.push("cluster");
  if (concepts.length === index.count) header.push("concept");
  if (iou.length === index.count) header.push("iou");
  const rel = c >= 0 && c < classes.length ? relevance(data, c, index.count) : null;
  if (rel) header.push(`relevance (${classes[c]})`);
  const rows = chosen.map((i) => {
    const l = index.layerOf(i);
    const row = [index.id(i), index.layers[l], i - index.starts[l]];
    if (clusters.length === index.count) row.push(clusters[i]);
    if (concepts.length === index.count) row.push(concepts[i] >= 0 ? names[concepts[i]] ?? "" : "");
    if (iou.length === index.count) row.push(Number.isNaN(iou[i]) ? "" : Number(iou[i].toPrecision(6)));
    if (rel) row.push(Number(rel[i].toPrecision(6)));
    return row;
  });
  return toCsv(header, rows);
}

const ORIGIN = "gallery";

/** The row of cluster n's feature visualisations in `layers`, or null: "cluster:<n>" (a
 * cluster in one layer) or "cluster:<n>@<layer>" (one per layer of a cluster that spans several). */
function clusterVisuals(visuals, n, layers, px) {
  const keys = [`cluster:${n}`, ...[...layers].map((l) => `cluster:${n}@${l}`)].filter((k) => visuals && visuals.rows.has(k));
  if (!keys.length) return null;
  return h("div", { class: "nc-gallery-row nc-cluster-fv", dataset: { cluster: n } },
    h("div", { class: "nc-gallery-label" }, h("div", { class: "nc-gallery-id", text: `cluster ${n}` })),
    h("div", { class: "nc-strip" }, keys.map((k) => P.visualFigure(visuals, k, px))));
}

export async function renderGallery({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const index = neuronIndex(data);
  const sheets = P.sheets(data);
  const visuals = P.visuals(data);
  const clusters = array(data.get("cluster"), "int32");

  const root = h("div", { class: "nc-view nc-gallery" });
  const toolbar = h("div", { class: "nc-toolbar" });
  const body = h("div", { class: "nc-gallery-body" });
  root.append(toolbar, body);
  el.appendChild(root);
  const setHeight = () => { root.style.maxHeight = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();

  const csv = h("button", { class: "nc-btn nc-csv", type: "button", text: "CSV", title: "download the selected neurons as a CSV file",
    on: { click: () => download("selection.csv", selectionCsv(state, data, index)) } });
  function buildToolbar() {
    clear(toolbar);
    const toggle = h("input", { type: "checkbox", checked: model.get("heatmap"), class: "nc-heat-toggle" });
    toggle.addEventListener("change", () => { model.set("heatmap", toggle.checked); model.save_changes(); });
    toolbar.append(h("span", { class: "nc-title", text: "Example patches" }),
      h("label", { class: "nc-check", title: "overlay each neuron's activation map" }, toggle, "activation heatmap"),
      h("span", { class: "nc-spacer" }), csv);
  }

  function render() {
    clear(body);
    const chosen = selected(state);
    csv.disabled = chosen.length === 0;
    const hovered = state.get("hover");
    const showing = chosen.length ? chosen : hovered;
    root.dataset.rows = "0";
    if (!sheets) {
      body.appendChild(message((data.get("notes") || {}).patches || "This atlas has no example patches."));
      return;
    }
    if (!showing.length) {
      body.appendChild(message("Select neurons in the projection or the graph (or hover over one) to see their example patches."));
      return;
    }
    const max = model.get("max_neurons");
    const heat = model.get("heatmap") && sheets.heat.length > 0;
    const px = model.get("patch_px");
    if (!chosen.length) {
      const what = hovered.length === 1 ? "hovered neuron" : `hovered: ${hovered.length} neurons${hovered.length > max ? ` (showing ${max})` : ""}`;
      body.appendChild(h("div", { class: "nc-gallery-sub", text: what }));
    } else {
      const groups = new Set();
      if (clusters.length) for (const i of chosen) if (clusters[i] >= 0) groups.add(clusters[i]);
      const cluster = groups.size === 1 && chosen.every((i) => clusters[i] === [...groups][0]) && chosen.length > 1
        ? [...groups][0] : -1;
      const what = cluster >= 0 ? `cluster ${cluster}: ${chosen.length} neurons` : `${chosen.length} selected neuron${chosen.length === 1 ? "" : "s"}`;
      body.appendChild(h("div", { class: "nc-gallery-sub", text: chosen.length > max ? `${what} (showing ${max})` : what }));
      const layers = new Set(chosen.map((i) => index.layers[index.layerOf(i)]));
      const row = cluster >= 0 ? clusterVisuals(visuals, cluster, layers, px) : null;
      if (row) body.appendChild(row);
    }
    if (model.get("heatmap") && !sheets.heat.length) body.appendChild(note("no activation heatmaps in this atlas (example_patches with heatmaps=True)"));
    for (const i of showing.slice(0, max)) {
      const row = h("div", { class: "nc-gallery-row", dataset: { neuron: index.id(i) },
        on: { mouseenter: () => setShared(state, { hover: [i] }, ORIGIN), mouseleave: () => setShared(state, { hover: [] }, ORIGIN) } });
      const facts = [index.layers[index.layerOf(i)]];
      if (clusters.length && clusters[i] >= 0) facts.push(`cluster ${clusters[i]}`);
      row.appendChild(h("div", { class: "nc-gallery-label" },
        h("div", { class: "nc-gallery-id", text: index.id(i) }), h("div", { class: "nc-card-sub", text: facts.join(" · ") })));
      const strip = h("div", { class: "nc-strip" });
      const visual = P.visualFigure(visuals, index.id(i), px);
      if (visual) strip.appendChild(visual);
      const m = P.count(sheets, i);
      for (let r = 0; r < m; r++) strip.appendChild(P.labelled(sheets, i, r, px, heat));
      if (!m) strip.appendChild(h("span", { class: "nc-card-sub", text: "no top images" }));
      row.appendChild(strip);
      body.appendChild(row);
    }
    root.dataset.rows = String(Math.min(showing.length, max));
  }

  listen(state, ["change:neurons"], render, signal);
  listen(state, ["change:hover"], () => { if (!selected(state).length && state.get("origin") !== ORIGIN) render(); }, signal);
  listen(model, ["change:heatmap", "change:max_neurons", "change:patch_px"], () => { buildToolbar(); render(); }, signal);
  listen(model, ["change:height"], setHeight, signal);
  buildToolbar();
  render();
  const cleanup = () => root.remove();
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
