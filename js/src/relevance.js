// Summit's A for one class, from the AtlasData model's CSR (notebookcarto/views/data.py:
// relevance_csr): each layer scaled by its largest count for the class.
import { array } from "./util.js";

/** The relevance (Summit's A, scaled per layer) of every neuron for class c. */
export function relevance(data, c, n) {
  const out = new Float32Array(n);
  const ptr = array(data.get("rel_indptr"), "uint32");
  if (c < 0 || c + 1 >= ptr.length) return out;
  const index = array(data.get("rel_index"), "uint32"), value = array(data.get("rel_value"), "float32");
  for (let j = ptr[c]; j < ptr[c + 1]; j++) out[index[j]] = value[j];
  return out;
}
