// The deletion and insertion curves (notebookcarto/views/explanation.py's Plotly chart: two
// traces per method, deletion then insertion) of the chosen image, the chosen method's bold,
// and every method's AUCs as a table; through the Plotly widget's own messages, so it works
// live and in an exported page alike.
import { array, h } from "../util.js";
import { restyle, styleChart, whenPlotted } from "../explorer/chart.js";

/** Render the chart of `model` into `slot` and the AUC table into `table`. Returns
 * {ready (a promise of whether it was drawn), update(), style(theme)}. */
export function renderCurves({ model, host, slot, table, row, signal }) {
  let chart = null;
  let theme = null;
  const fill = () => {
    const methods = model.get("methods") || [];
    const del = array(model.get("deletion_auc"), "float32");
    const ins = array(model.get("insertion_auc"), "float32");
    const n = (model.get("image_ids") || { shape: [0] }).shape[0];
    const r = row();
    table.replaceChildren(h("div", { class: "nc-auc-row nc-auc-head" },
      h("span", { text: "method" }), h("span", { text: "deletion AUC ↓" }), h("span", { text: "insertion AUC ↑" })));
    methods.forEach((name, i) => {
      table.appendChild(h("div", { class: `nc-auc-row${name === model.get("method") ? " nc-on" : ""}`, dataset: { method: name } },
        h("span", { text: name }), h("span", { text: del[i * n + r].toFixed(3) }), h("span", { text: ins[i * n + r].toFixed(3) })));
    });
  };
  const update = () => {
    fill();
    if (!chart) return;
    const methods = model.get("methods") || [];
    const del = array(model.get("deletion"), "float32");
    const ins = array(model.get("insertion"), "float32");
    const [, n, k] = del.shape;
    const r = row();
    const ys = [], widths = [];
    methods.forEach((name, i) => {
      for (const curves of [del, ins]) {
        ys.push(Array.from(curves.subarray((i * n + r) * k, (i * n + r + 1) * k)));
        widths.push(name === model.get("method") ? 3 : 1.5);
      }
    });
    restyle(chart, { y: ys, "line.width": widths }, ys.map((_, i) => i));
  };
  const ready = (async () => {
    const ref = model.get("chart");
    if (!ref) { fill(); return false; }
    await (await host.getWidget(ref)).render({ el: slot, signal });
    if (!(await whenPlotted(slot, signal))) return false;
    chart = await host.getModel(ref);
    update();
    styleChart(chart, slot, theme);
    const fitted = new ResizeObserver(() => styleChart(chart, slot, theme));
    fitted.observe(slot);
    signal?.addEventListener("abort", () => fitted.disconnect());
    return true;
  })();
  const style = (next) => { theme = next; if (chart) styleChart(chart, slot, theme); };
  return { ready, update, style };
}
