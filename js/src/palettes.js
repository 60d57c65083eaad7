// Colour palettes: categorical ones that stay distinct, also for colour-blind readers, for the
// number of groups shown (Paul Tol's "bright" up to 7, "muted" on light / "light" on dark up
// to 9), an ordered ramp beyond; sequential ramps for relevance and accuracy that start clearly
// off the background. Each has a light and a dark version.
import { ramp } from "./util.js";

const BRIGHT = ["#4477aa", "#ee6677", "#228833", "#ccbb44", "#66ccee", "#aa3377", "#bbbbbb"];
const MUTED = ["#cc6677", "#332288", "#ddcc77", "#117733", "#88ccee", "#882255", "#44aa99", "#999933", "#aa4499"];
const LIGHT = ["#77aadd", "#ee8866", "#eedd88", "#ffaabb", "#99ddff", "#44bb99", "#bbcc33", "#aaaa00", "#dddddd"];
// perceptually ordered (viridis-like), without the end that vanishes into the background
const ORDERED = { light: ["#440154", "#3b528b", "#21918c", "#5ec962", "#b5de2b"],
                  dark: ["#3b528b", "#21918c", "#5ec962", "#b5de2b", "#fde725"] };

/** The most groups that get distinct categorical colours. */
export const DISTINCT_MAX = 9;

/** n colours that tell n groups apart on a light or `dark` background: categorical up to
 * DISTINCT_MAX, an ordered ramp (for ordered groups such as layers) beyond. */
export function distinctColours(n, dark = false) {
  if (n <= 0) return [];
  if (n <= BRIGHT.length) return BRIGHT.slice(0, n);
  if (n <= DISTINCT_MAX) return (dark ? LIGHT : MUTED).slice(0, n);
  return ramp(ORDERED[dark ? "dark" : "light"], n);
}

/** Many labels (clusters): 20 colours that repeat. */
export const CYCLE = [
  "#4c6ef5", "#f76707", "#37b24d", "#e03131", "#7048e8", "#a0522d", "#d6336c", "#868e96",
  "#94d82d", "#15aabf", "#1c7ed6", "#ffa94d", "#69db7c", "#ff8787", "#b197fc", "#c8a27c",
  "#faa2c1", "#ced4da", "#d8f5a2", "#99e9f2",
];

/** Points without a label (no cluster, no concept): faint, but not the background. */
export const noneColour = (dark) => (dark ? "#454c56" : "#c9cfd6");
/** Labels grouped as "other". */
export const otherColour = (dark) => (dark ? "#7d8691" : "#8c959f");

/** Class relevance (A, per layer): from a grey clearly off the background to a strong red
 * (light) or a bright yellow (dark). */
export const relevanceStops = (dark) => (dark
  ? ["#4f5967", "#8a5a2b", "#d0752a", "#f4a340", "#ffe08a"]
  : ["#b4bfcc", "#f2c48d", "#ec8a3c", "#d1502a", "#9e1c1c"]);

/** Accuracy, low to high: the ordered ramp (no red against green). */
export const accuracyStops = (dark) => ORDERED[dark ? "dark" : "light"];
