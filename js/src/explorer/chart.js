// The Explorer's Plotly chart (notebookcarto/views/charts.py: trace 0 the classes, trace 1 the
// selected neurons per layer, as horizontal bars). The page sizes it to its panel and gives it
// the theme's colours; in an exported page, with no kernel, it also follows the selection here
// (what charts.py does from Python live). Both go through the Plotly widget's own messages.
import { neuronIndex, selected, setShared } from "../util.js";

// bar colours, as charts.py draws them
const PLAIN = "#98a2ad";
const HIGHLIGHT = "#e8590c";

/** Resolves true once Plotly has drawn the chart in `slot` (false if it never does). */
export function whenPlotted(slot, signal, timeout = 20000) {
  return new Promise((resolve) => {
    const start = performance.now();
    const poll = () => {
      if (signal?.aborted) return resolve(false);
      if (slot._fullLayout && slot.querySelector(".main-svg")) return resolve(true);
      if (performance.now() - start > timeout) return resolve(false);
      setTimeout(poll, 40);
    };
    poll();
  });
}

/** Relayout the Plotly widget `chart` in this page (its front end applies it). */
export function relayout(chart, data) {
  chart.set("_py2js_relayout", { relayout_data: data, layout_edit_id: null, source_view_id: "notebookcarto" });
}

/** Restyle traces of the Plotly widget `chart` in this page. */
export function restyle(chart, data, traces) {
  chart.set("_py2js_restyle", { restyle_data: data, restyle_traces: traces, source_view_id: "notebookcarto" });
}

/** Integer ticks from 0 for an axis of counts (as charts.py's count_axis). */
export function countAxis(counts) {
  const top = Math.max(0, ...counts);
  const step = Math.max(1, Math.ceil(top / 5));
  return { tick0: 0, dtick: step, range: [0, Math.max(1, top) * 1.08], tickformat: "d" };
}

/** Give the chart its panel's width and the theme's text and grid colours. */
export function styleChart(chart, slot, theme) {
  if (!theme || !slot._fullLayout) return;
  const width = Math.floor(slot.clientWidth);
  const layout = slot._fullLayout;
  const axes = Object.keys(layout).filter((k) => /^[xy]axis\d*$/.test(k));
  const change = {};
  if (width > 0 && Math.abs((layout.width || 0) - width) > 1) change.width = width;
  if (layout.font?.color !== theme.text) {
    change["font.color"] = theme.text;
    for (const axis of axes) {
      change[`${axis}.gridcolor`] = theme.grid;
      change[`${axis}.linecolor`] = theme.grid;
      change[`${axis}.zerolinecolor`] = theme.grid;
    }
    change["hoverlabel.bgcolor"] = theme.dark ? "#2c313a" : "#ffffff";
    change["hoverlabel.font.color"] = theme.text;
    change["hoverlabel.bordercolor"] = theme.muted;
  }
  if (Object.keys(change).length) relayout(chart, change);
}

/** With no kernel, restyle the chart here when the selection changes, starting with what it
 * is now (the class highlighted, the counts per layer with integer ticks); a click on a class
 * bar selects the class. */
export async function followOffline(chart, slot, state, data, signal) {
  const index = neuronIndex(data);
  const k = (data.get("class_names") || []).length;
  // the class axis's labels (charts.py: escaped names, the selected one in <b>)
  const listed = slot.layout?.yaxis?.ticktext;
  const ticks = Array.isArray(listed) ? listed.map((t) => String(t).replace(/^<b>(.*)<\/b>$/, "$1")) : null;
  const update = () => {
    const counts = index.sizes.map(() => 0);
    for (const i of selected(state)) if (i >= 0 && i < index.count) counts[index.layerOf(i)] += 1;
    const c = state.get("cls");
    const colours = Array.from({ length: k }, (_, i) => (i === c ? HIGHLIGHT : PLAIN));
    restyle(chart, { "marker.color": [colours] }, [0]);
    restyle(chart, { x: [counts] }, [1]);
    const axis = Object.fromEntries(Object.entries(countAxis(counts)).map(([key, value]) => [`xaxis2.${key}`, value]));
    if (ticks) axis["yaxis.ticktext"] = ticks.map((t, i) => (i === c ? `<b>${t}</b>` : t));
    relayout(chart, axis);
  };
  const onState = () => update();
  state.on("change:neurons", onState);
  state.on("change:cls", onState);
  signal?.addEventListener("abort", () => { state.off("change:neurons", onState); state.off("change:cls", onState); });
  slot.on?.("plotly_click", (event) => {
    const point = event && event.points && event.points[0];
    if (point && point.curveNumber === 0) setShared(state, { cls: point.pointIndex }, "chart");
  });
  update();
}
