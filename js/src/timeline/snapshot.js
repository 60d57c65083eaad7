// The Explorer of the chosen step's snapshot. Live, Python loads it (the `explorer` trait, of
// step `shown`); an exported page holds the Explorers of `explorer_steps` and switches among
// them here. The slot says which step it shows (data-step) and whether it waits for one.
import { clear, h, listen, message } from "../util.js";

/** The Explorer wanted for the chosen step: {ref, step} (step: the one that Explorer shows). */
function wanted(model) {
  const step = model.get("step");
  const i = (model.get("explorer_steps") || []).indexOf(step);
  if (i >= 0) return { ref: model.get("explorers")[i], step };
  return { ref: model.get("explorer"), step: model.get("shown") };
}

/** Returns {update()}: show the Explorer of the chosen step (a promise, resolved once drawn). */
export function renderSnapshot({ model, host, slot, signal }) {
  let current = null;  // {ref, controller}
  const drop = () => {
    current?.controller.abort();
    current = null;
    clear(slot);
    delete slot.dataset.step;
  };
  const update = async () => {
    const step = model.get("step");
    const target = wanted(model);
    const waiting = target.step !== step;
    if (waiting && host.offline) {
      drop();
      slot.appendChild(message(`The snapshot of step ${step} is not in this page: timeline_html(..., steps=[...]) chooses the snapshots it holds.`));
      return;
    }
    if (waiting) slot.dataset.loading = "1"; else delete slot.dataset.loading;
    if (!target.ref) {
      drop();
      if (step < 0) slot.appendChild(message("The Explorer of a snapshot shows here once the monitor has written one."));
      return;
    }
    if (current?.ref === target.ref) return;
    drop();
    const controller = new AbortController();
    signal?.addEventListener("abort", () => controller.abort());
    current = { ref: target.ref, controller };
    const box = h("div", { class: "nc-timeline-explorer" });
    slot.appendChild(box);
    try {
      await (await host.getWidget(target.ref)).render({ el: box, signal: controller.signal });
      if (!controller.signal.aborted) slot.dataset.step = String(target.step);
    } catch (err) {
      box.textContent = `could not show the snapshot of step ${target.step}: ${err && err.message ? err.message : err}`;
      console.error("notebookcarto timeline:", err);
    }
  };
  listen(model, ["change:explorer"], update, signal);
  signal?.addEventListener("abort", drop);
  return { update };
}
