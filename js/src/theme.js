// The theme the views are drawn in: JupyterLab's (its --jp-* variables feed the views' --nc-*
// variables, see widget.css) or, in an exported page, the system's (prefers-color-scheme).
// Read from the view's own resolved variables, so it is right wherever the view is shown.

let context = null;

/** A CSS colour (any syntax: "#111", "white", "rgba(…)") as [r, g, b, a] (0-255, alpha 0-1);
 * null when it is not a colour. */
export function cssColour(value) {
  const text = String(value || "").trim();
  if (!text) return null;
  context ||= document.createElement("canvas").getContext("2d");
  if (!context) return null;
  // an invalid value leaves fillStyle as it was: try it from two different starting colours
  context.fillStyle = "#010203";
  context.fillStyle = text;
  const first = context.fillStyle;
  context.fillStyle = "#030201";
  context.fillStyle = text;
  if (context.fillStyle !== first) return null;
  if (first.startsWith("#")) {
    return [1, 3, 5].map((i) => parseInt(first.slice(i, i + 2), 16)).concat([1]);
  }
  const parts = first.match(/[\d.]+/g) || [];
  return [Number(parts[0]), Number(parts[1]), Number(parts[2]), parts.length > 3 ? Number(parts[3]) : 1];
}

/** WCAG relative luminance of [r, g, b]. */
export function luminance(rgb) {
  const [r, g, b] = rgb.slice(0, 3).map((v) => {
    const c = v / 255;
    return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}

export function toHex(rgb) {
  return "#" + rgb.slice(0, 3).map((v) => Math.round(v).toString(16).padStart(2, "0")).join("");
}

/** `fg` (with its alpha) over the opaque `bg`, as an opaque colour. */
export function over(fg, bg) {
  const a = fg[3] ?? 1;
  return [0, 1, 2].map((i) => fg[i] * a + bg[i] * (1 - a)).concat([1]);
}

const systemDark = () => typeof matchMedia === "function" && matchMedia("(prefers-color-scheme: dark)").matches;

/**
 * The theme of element `el` (inside a .notebookcarto view): {name, dark, background, text,
 * muted, grid} with colours as "#rrggbb" (over the background where they are translucent).
 */
export function readTheme(el) {
  const style = getComputedStyle(el);
  const bg = cssColour(style.getPropertyValue("--nc-bg"));
  const dark = bg && bg[3] > 0.5 ? luminance(bg) < 0.35 : systemDark();
  const ground = bg && bg[3] > 0.5 ? over(bg, dark ? [22, 25, 29] : [255, 255, 255]) : (dark ? [22, 25, 29, 1] : [255, 255, 255, 1]);
  const colour = (name, fallback) => {
    const c = cssColour(style.getPropertyValue(name));
    return toHex(c ? over(c, ground) : fallback);
  };
  return {
    name: dark ? "dark" : "light",
    dark,
    background: toHex(ground),
    text: colour("--nc-text", dark ? [227, 231, 236] : [31, 41, 51]),
    muted: colour("--nc-muted", dark ? [154, 164, 175] : [92, 103, 115]),
    grid: dark ? "rgba(200, 205, 212, 0.16)" : "rgba(80, 90, 100, 0.16)",
  };
}

/**
 * Follow the theme of `el`: `onChange(theme)` now and whenever it changes (JupyterLab's theme
 * switch, the system's setting, the view moved to another page), until `signal` aborts. Sets
 * `el.dataset.theme` ("light" or "dark"), which widget.css styles by. Returns a function that
 * gives the current theme.
 */
export function followTheme(el, onChange, signal) {
  let current = null;
  let key = "";
  const check = () => {
    if (signal?.aborted) return;
    const theme = readTheme(el);
    const next = `${theme.name}|${theme.background}|${theme.text}`;
    if (next === key) return;
    key = next;
    current = theme;
    el.dataset.theme = theme.name;
    onChange(theme);
  };
  // JupyterLab sets body[data-jp-theme-*] and swaps a stylesheet; the new variables may come
  // a little after the attribute, so look again shortly after
  const later = () => { check(); setTimeout(check, 80); setTimeout(check, 600); };
  const mutations = new MutationObserver(later);
  for (const target of [document.documentElement, document.body].filter(Boolean)) {
    mutations.observe(target, { attributes: true, attributeFilter: ["class", "style", "data-jp-theme-light", "data-jp-theme-name", "data-theme"] });
  }
  if (document.head) mutations.observe(document.head, { childList: true });
  const media = typeof matchMedia === "function" ? matchMedia("(prefers-color-scheme: dark)") : null;
  media?.addEventListener?.("change", later);
  // a view rendered before it is in the page has no resolved variables yet: look when it is laid out
  const sized = typeof ResizeObserver === "function" ? new ResizeObserver(check) : null;
  sized?.observe(el);
  signal?.addEventListener("abort", () => {
    mutations.disconnect();
    sized?.disconnect();
    media?.removeEventListener?.("change", later);
  });
  el.dataset.theme = "light";
  check();
  return () => current || readTheme(el);
}
