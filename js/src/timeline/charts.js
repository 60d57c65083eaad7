// The timeline's Plotly curves (notebookcarto/views/timeline.py: the monitor's figures, each
// with shape 0 marking the chosen step). The page moves the marker, gives each chart its
// panel's width and the theme's colours, and a click on a point chooses its step; all through
// the Plotly widget's own messages, so it works live and in an exported page alike.
import { h, clear, listen } from "../util.js";
import { relayout, styleChart, whenPlotted } from "../explorer/chart.js";

/** Render the charts of `model` into `box`; re-rendered when the list of charts changes.
 * Returns {ready (a promise), mark() (the chosen step), style(theme), names()}. */
export function renderCharts({ model, host, box, choose, signal }) {
  let drawn = [];  // [{chart model, slot}]
  let theme = null;
  let round = null;
  const mark = () => {
    const step = model.get("step");
    const shown = step !== null && step !== undefined && step >= 0;
    for (const { chart } of drawn) {
      relayout(chart, { "shapes[0].x0": shown ? step : 0, "shapes[0].x1": shown ? step : 0, "shapes[0].visible": shown });
    }
  };
  const style = (next) => {
    theme = next || theme;
    for (const { chart, slot } of drawn) styleChart(chart, slot, theme);
  };
  const draw = async () => {
    round?.abort();
    const controller = new AbortController();
    round = controller;
    signal?.addEventListener("abort", () => controller.abort());
    clear(box);
    drawn = [];
    const names = model.get("chart_names") || [];
    const jobs = (model.get("charts") || []).map(async (ref, i) => {
      const slot = h("div", { class: "nc-timeline-chart", dataset: { chart: names[i] || "" } });
      box.appendChild(slot);
      try {
        const chart = await host.getModel(ref);
        await (await host.getWidget(ref)).render({ el: slot, signal: controller.signal });
        if (!(await whenPlotted(slot, controller.signal))) return;
        drawn.push({ chart, slot });
        slot.on?.("plotly_click", (event) => {
          const point = event && event.points && event.points[0];
          if (point) choose(point.x);
        });
      } catch (err) {
        slot.textContent = `could not show the ${names[i] || "chart"}: ${err && err.message ? err.message : err}`;
        console.error("notebookcarto timeline:", err);
      }
    });
    await Promise.all(jobs);
    if (controller.signal.aborted) return;
    style();
    mark();
    const fitted = new ResizeObserver(() => style());
    for (const { slot } of drawn) fitted.observe(slot);
    controller.signal.addEventListener("abort", () => fitted.disconnect());
  };
  listen(model, ["change:charts"], () => { draw(); }, signal);
  return { ready: draw(), mark, style, names: () => drawn.map(({ slot }) => slot.dataset.chart) };
}
