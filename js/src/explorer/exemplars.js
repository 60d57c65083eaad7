// A click on a gallery exemplar whose image the atlas explains shows that image's explanation
// (the explanation view's `patch_rows`: the row of each patch's image, -1 where it was not
// explained; its `image` trait then chooses it). A click on an unexplained one asks the
// explanation view to explain its image (`patch_images`, sent when the view has an explainer):
// an "nc-explain" event on the view's root, which the view sends to the kernel when there is
// one (not in an exported page: there the click does nothing).
import { array, setTrait } from "../util.js";

/** Value of the (neurons, n_patches) array trait `name` at patch `rank` of `neuron`, or -1. */
function atPatch(explanation, name, neuron, rank) {
  const values = array(explanation.get(name), "int32");
  if (!values.length || neuron < 0 || neuron >= values.shape[0] || rank < 0 || rank >= values.shape[1]) return -1;
  return values[neuron * values.shape[1] + rank];
}

/** The image id explained for patch `rank` of `neuron`, or -1. */
export function explainedImage(explanation, neuron, rank) {
  const row = atPatch(explanation, "patch_rows", neuron, rank);
  return row < 0 ? -1 : array(explanation.get("image_ids"), "int32")[row];
}

/** Listen for clicks on the patches in `gallery` (elements with data-neuron and data-rank):
 * show the explanation of an explained one in `slot`, ask for one of another. */
export function followExemplars(gallery, explanation, slot, signal) {
  const click = (event) => {
    const patch = event.target.closest?.(".nc-patch[data-neuron][data-rank]");
    if (!patch) return;
    const neuron = Number(patch.dataset.neuron), rank = Number(patch.dataset.rank);
    const image = explainedImage(explanation, neuron, rank);
    if (image >= 0) {
      setTrait(explanation, "image", image);
    } else {
      const unexplained = atPatch(explanation, "patch_images", neuron, rank);
      if (unexplained < 0) return;
      // the view cancels the event when it sends the request
      const view = slot.querySelector(".nc-explanation");
      const ask = new CustomEvent("nc-explain", { detail: { image: unexplained }, cancelable: true });
      if (!view || view.dispatchEvent(ask)) return;
    }
    slot.scrollIntoView?.({ block: "nearest" });
  };
  gallery.addEventListener("click", click);
  signal?.addEventListener("abort", () => gallery.removeEventListener("click", click));
}
