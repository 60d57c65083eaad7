// The Plotly chart in an exported page: with no kernel, the page restyles it itself.
import { listen, neuronIndex, selected } from "../util.js";

// Colours of the class bars, as notebookcarto/views/charts.py draws them.
const PLAIN = "#9aa5b1";
const HIGHLIGHT = "#d9480f";

/** With no kernel to update the Plotly chart, restyle it here when the selection changes
 * (trace 0: the class bars, trace 1: selected neurons per layer; see charts.py). */
export async function followOffline(chart, state, data, signal) {
  const index = neuronIndex(data);
  const k = (data.get("class_names") || []).length;
  const update = () => {
    const counts = index.sizes.map(() => 0);
    for (const i of selected(state)) if (i >= 0 && i < index.count) counts[index.layerOf(i)] += 1;
    const c = state.get("cls");
    const colours = Array.from({ length: k }, (_, i) => (i === c ? HIGHLIGHT : PLAIN));
    chart.set("_py2js_restyle", { restyle_data: { "marker.color": [colours] }, restyle_traces: [0] });
    chart.set("_py2js_restyle", { restyle_data: { y: [counts] }, restyle_traces: [1] });
  };
  listen(state, ["change:neurons", "change:cls"], update, signal);
}
