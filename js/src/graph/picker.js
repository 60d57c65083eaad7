// The class picker: search the class names, pick one (Enter picks the first match).
import { clear, h, setShared } from "../util.js";

const ORIGIN = "graph";

export function classPicker(g) {
  const { state, classNames } = g;
  const c = state.get("cls");
  const wrap = h("div", { class: "nc-picker" });
  const input = h("input", { type: "search", class: "nc-search nc-class-search", placeholder: classNames[c] ?? "search classes…", title: "pick a class" });
  const list = h("div", { class: "nc-picker-list", style: { display: "none" } });
  const matches = () => {
    const q = input.value.trim().toLowerCase();
    return classNames.map((name, i) => [name, i]).filter(([name]) => name.toLowerCase().includes(q)).slice(0, 60);
  };
  const pick = (i) => { list.style.display = "none"; input.value = ""; setShared(state, { cls: i }, ORIGIN); };
  const fill = () => {
    clear(list);
    for (const [name, i] of matches()) {
      list.appendChild(h("div", { class: `nc-picker-item ${i === state.get("cls") ? "nc-on" : ""}`, text: name,
        on: { mousedown: (e) => { e.preventDefault(); pick(i); } } }));
    }
    list.style.display = list.childElementCount ? "" : "none";
  };
  input.addEventListener("focus", fill);
  input.addEventListener("input", fill);
  input.addEventListener("blur", () => { list.style.display = "none"; });
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { const m = matches(); if (m.length) pick(m[0][1]); }
    if (e.key === "Escape") { list.style.display = "none"; input.blur(); }
  });
  wrap.append(input, list);
  return wrap;
}
