// PatchGallery: example patches of the selected (or hovered) neurons, values underneath.
import { array, clear, h, listen, message, neuronIndex, note, selected, setShared } from "../util.js";
import * as P from "../patches.js";

const ORIGIN = "gallery";

export async function renderGallery({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const index = neuronIndex(data);
  const sheets = P.sheets(data);
  const clusters = array(data.get("cluster"), "int32");

  const root = h("div", { class: "nc-view nc-gallery" });
  const toolbar = h("div", { class: "nc-toolbar" });
  const body = h("div", { class: "nc-gallery-body" });
  root.append(toolbar, body);
  el.appendChild(root);
  const setHeight = () => { root.style.maxHeight = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();

  function buildToolbar() {
    clear(toolbar);
    const toggle = h("input", { type: "checkbox", checked: model.get("heatmap"), class: "nc-heat-toggle" });
    toggle.addEventListener("change", () => { model.set("heatmap", toggle.checked); model.save_changes(); });
    toolbar.append(h("span", { class: "nc-title", text: "Example patches" }),
      h("label", { class: "nc-check", title: "overlay each neuron's activation map" }, toggle, "activation heatmap"));
  }

  function render() {
    clear(body);
    const chosen = selected(state);
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
      const what = groups.size === 1 && chosen.every((i) => clusters[i] === [...groups][0]) && chosen.length > 1
        ? `cluster ${[...groups][0]}: ${chosen.length} neurons` : `${chosen.length} selected neuron${chosen.length === 1 ? "" : "s"}`;
      body.appendChild(h("div", { class: "nc-gallery-sub", text: chosen.length > max ? `${what} (showing ${max})` : what }));
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
