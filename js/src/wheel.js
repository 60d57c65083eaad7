// The mouse wheel belongs to the page (the notebook scrolls) unless the user is working in the
// view: with Ctrl, ⌘ or Alt held, or after a click in it until a click elsewhere or Escape,
// as maps embedded in web pages do. A wheel the view lets pass shows a hint saying so.
import { h } from "./util.js";

const HINT = "Scroll with Ctrl (or ⌘) held to zoom, or click the view first";

/** Guard the wheel over `el` (its zoom listeners are on it or inside it); the hint goes into
 * `hintParent`. `onEngage(engaged)` hears when the view takes or gives back the wheel. */
export function guardWheel(el, hintParent, signal, onEngage = () => {}) {
  let engaged = false;
  let timer = 0;
  const hint = h("div", { class: "nc-wheel-hint", text: HINT, style: { display: "none" } });
  hintParent.appendChild(hint);
  const setEngaged = (value) => {
    if (value === engaged) return;
    engaged = value;
    el.classList.toggle("nc-engaged", value);
    onEngage(value);
  };
  const options = { capture: true, signal };
  el.addEventListener("pointerdown", () => { setEngaged(true); hint.style.display = "none"; }, options);
  document.addEventListener("pointerdown", (event) => { if (!el.contains(event.target)) setEngaged(false); }, options);
  document.addEventListener("keydown", (event) => { if (event.key === "Escape") setEngaged(false); }, options);
  el.addEventListener("wheel", (event) => {
    if (engaged || event.ctrlKey || event.metaKey || event.altKey) return;  // the view zooms
    event.stopPropagation();  // the view never sees it; the page scrolls
    hint.style.display = "";
    clearTimeout(timer);
    timer = setTimeout(() => { hint.style.display = "none"; }, 1600);
  }, options);
  return { engaged: () => engaged };
}
