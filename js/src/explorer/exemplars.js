// A click on a gallery exemplar whose image the atlas explains shows that image's explanation
// (the explanation view's `patch_rows`: the row of each patch's image, -1 where it was not
// explained; its `image` trait then chooses it).
import { array, setTrait } from "../util.js";

/** The image id explained for patch `rank` of `neuron`, or -1. */
export function explainedImage(explanation, neuron, rank) {
  const rows = array(explanation.get("patch_rows"), "int32");
  if (!rows.length || neuron < 0 || neuron >= rows.shape[0] || rank < 0 || rank >= rows.shape[1]) return -1;
  const row = rows[neuron * rows.shape[1] + rank];
  return row < 0 ? -1 : array(explanation.get("image_ids"), "int32")[row];
}

/** Listen for clicks on the patches in `gallery` (elements with data-neuron and data-rank)
 * and show the explanation of an explained one in `slot`. */
export function followExemplars(gallery, explanation, slot, signal) {
  const click = (event) => {
    const patch = event.target.closest?.(".nc-patch[data-neuron][data-rank]");
    if (!patch) return;
    const image = explainedImage(explanation, Number(patch.dataset.neuron), Number(patch.dataset.rank));
    if (image < 0) return;
    setTrait(explanation, "image", image);
    slot.scrollIntoView?.({ block: "nearest" });
  };
  gallery.addEventListener("click", click);
  signal?.addEventListener("abort", () => gallery.removeEventListener("click", click));
}
