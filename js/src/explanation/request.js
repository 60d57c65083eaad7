// On-demand explanations (an ExplanationView given an explainer): a request asks the kernel to
// explain an image (the custom message {type: "explain", image}); the status line says
// "explaining image N…" from the click until the kernel is done, then the kernel's error if it
// failed. An exported page has no kernel: there requests are ignored.
import { listen } from "../util.js";

/** Show the requests of `model` in `el`. Returns request(image): asks the kernel to explain
 * `image`; false (nothing sent) offline, without an explainer or while one is in progress. */
export function followRequests(model, host, el, signal) {
  let asked = -1;  // sent, not yet taken up by the kernel
  const show = () => {
    const working = model.get("pending") >= 0 ? model.get("pending") : asked;
    const error = model.get("error") || "";
    el.textContent = working >= 0 ? `explaining image ${working}…` : error;
    el.dataset.state = working >= 0 ? "working" : error ? "error" : "idle";
    el.setAttribute("role", error && working < 0 ? "alert" : "status");
  };
  listen(model, ["change:pending", "change:error"], () => { asked = -1; show(); }, signal);
  show();
  return (image) => {
    if (host.offline || !model.get("explainable") || asked >= 0 || model.get("pending") >= 0) return false;
    asked = image;
    show();
    model.send({ type: "explain", image });
    return true;
  };
}
