// anywidget entry: one module for every notebookcarto view; the `_view` trait picks the view.
import css from "./widget.css";
import { injectCss } from "./util.js";
import { followTheme } from "./theme.js";
import { renderScatter } from "./scatter/index.js";
import { renderGraph } from "./graph/index.js";
import { renderGallery } from "./gallery/index.js";
import { renderSidebar } from "./sidebar/index.js";
import { renderExplorer } from "./explorer/index.js";
import { renderDissection } from "./dissection/index.js";
import { renderTimeline } from "./timeline/index.js";
import { renderExplanation } from "./explanation/index.js";

const VIEWS = {
  scatter: renderScatter,
  graph: renderGraph,
  gallery: renderGallery,
  sidebar: renderSidebar,
  explorer: renderExplorer,
  dissection: renderDissection,
  timeline: renderTimeline,
  explanation: renderExplanation,
};

async function render({ model, el, host, signal }) {
  injectCss(css);
  const kind = model.get("_view");
  const view = VIEWS[kind];
  if (!view) {
    el.textContent = `notebookcarto: unknown view ${JSON.stringify(kind)}`;
    return undefined;
  }
  if (!host || typeof host.getModel !== "function") {
    el.textContent = "notebookcarto needs anywidget >= 0.10 (host.getModel) to link its views.";
    return undefined;
  }
  const controller = new AbortController();
  const stop = () => controller.abort();
  signal?.addEventListener("abort", stop);
  el.classList.add("notebookcarto");
  followTheme(el, () => {}, controller.signal);  // data-theme: the colours widget.css derives
  try {
    await view({ model, el, host, signal: controller.signal });
  } catch (err) {
    console.error("notebookcarto:", err);
    el.appendChild(document.createTextNode(`notebookcarto could not draw this view: ${err && err.message ? err.message : err}`));
  }
  return stop;
}

export default { render };
