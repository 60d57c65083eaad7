// TimelineView (notebookcarto/views/timeline.py): a training run's timeline. A step slider, the
// Plotly curves of the timeline (charts.js) and the Explorer of the chosen step's snapshot
// (snapshot.js). The chosen step lives in the model: live, Python loads that snapshot's
// Explorer; in an exported page the view switches among the Explorers embedded in it.
import { fillNotes, h, listen, pct } from "../util.js";
import { followTheme } from "../theme.js";
import { renderCharts } from "./charts.js";
import { renderSnapshot } from "./snapshot.js";

/** "step 40 · snapshot 3 of 5 · accuracy 62.5%" for the step at `index` of the curves. */
export function stepLabel(curves, index) {
  const steps = curves.steps || [];
  if (!steps.length) return "no snapshot yet: the slider fills as the monitor writes them";
  const parts = [`step ${steps[index]}`, `snapshot ${index + 1} of ${steps.length}`];
  const accuracy = (curves.overall_accuracy || [])[index];
  if (accuracy !== null && accuracy !== undefined) parts.push(`accuracy ${pct(accuracy)}`);
  return parts.join(" · ");
}

export async function renderTimeline({ model, el, host, signal }) {
  const root = h("div", { class: "nc-timeline" });
  const title = h("span", { class: "nc-explorer-title" });
  const slider = h("input", { type: "range", class: "nc-range nc-timeline-slider", min: "0", step: "1",
    attrs: { "aria-label": "training step" } });
  const label = h("span", { class: "nc-timeline-step" });
  const notes = h("div", { class: "nc-notes" });
  const charts = h("div", { class: "nc-timeline-charts" });
  const snapshot = h("div", { class: "nc-timeline-snapshot" });
  root.append(
    h("div", { class: "nc-explorer-header" }, title,
      h("span", { class: "nc-explorer-hint", text: "drag the slider or click a point of a curve to see that step's snapshot" })),
    h("div", { class: "nc-timeline-bar" }, slider, label), notes, charts, snapshot);
  el.appendChild(root);

  const steps = () => model.get("steps") || [];
  const choose = (step) => {
    if (!steps().includes(step) || step === model.get("step")) return;
    model.set("step", step);
    model.save_changes();
  };
  const showStep = () => {
    const list = steps();
    const index = Math.max(0, list.indexOf(model.get("step")));
    slider.max = String(Math.max(0, list.length - 1));
    slider.value = String(index);
    slider.disabled = list.length < 2;
    label.textContent = stepLabel(model.get("curves") || {}, index);
  };
  // the label follows the drag; the step (and the snapshot loaded for it) only its end
  slider.addEventListener("input", () => { label.textContent = stepLabel(model.get("curves") || {}, Number(slider.value)); });
  slider.addEventListener("change", () => choose(steps()[Number(slider.value)]));
  const showTitle = () => { title.textContent = model.get("title") || "training timeline"; };
  const showNotes = () => fillNotes(notes, model.get("notes") || []);
  showTitle(); showNotes(); showStep();
  listen(model, ["change:title"], showTitle, signal);
  listen(model, ["change:notes"], showNotes, signal);
  listen(model, ["change:steps", "change:curves"], showStep, signal);

  const curves = renderCharts({ model, host, box: charts, choose, signal });
  const explorer = renderSnapshot({ model, host, slot: snapshot, signal });
  followTheme(el, (theme) => curves.style(theme), signal);
  listen(model, ["change:step"], () => { showStep(); curves.mark(); explorer.update(); }, signal);
  await Promise.all([curves.ready, explorer.update()]);
  root.dataset.ready = "1";
  // for tests and scripts
  root.ncTimeline = {
    step: () => model.get("step"),
    shown: () => (snapshot.dataset.step === undefined ? null : Number(snapshot.dataset.step)),
    charts: () => curves.names(),
    choose,
  };
  const cleanup = () => root.remove();
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
