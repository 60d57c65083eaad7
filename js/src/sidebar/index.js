// ClassSidebar: Summit's class list with search, sorting, accuracy and probability histograms.
import { array, clear, fillNotes, h, listen, message, pct, scrollWithin, select, setShared } from "../util.js";
import { histogram } from "./histogram.js";

const ORIGIN = "sidebar";

export async function renderSidebar({ model, el, host, signal }) {
  const state = await host.getModel(model.get("state"));
  const data = await host.getModel(model.get("data"));
  const names = data.get("class_names") || [];
  const k = names.length;

  const root = h("div", { class: "nc-view nc-sidebar" });
  const toolbar = h("div", { class: "nc-toolbar nc-toolbar-col" });
  const list = h("div", { class: "nc-class-list" });
  const notes = h("div", { class: "nc-notes" });
  root.append(toolbar, list, notes);
  el.appendChild(root);
  const setHeight = () => { root.style.height = model.get("height") > 0 ? `${model.get("height")}px` : ""; };
  setHeight();
  fillNotes(notes, model.get("notes") || []);

  const search = h("input", { type: "search", class: "nc-search nc-sidebar-search", placeholder: "search classes…", value: model.get("query") });
  search.addEventListener("input", () => { model.set("query", search.value); model.save_changes(); render(); });
  const sorts = [
    { value: "similarity", label: "similar to selected" },
    { value: "accuracy-desc", label: "accuracy, high first" },
    { value: "accuracy-asc", label: "accuracy, low first" },
    { value: "name", label: "name" },
  ];
  const sort = select(sorts, model.get("sort"), (v) => { model.set("sort", v); model.save_changes(); render(); }, "sort the classes");
  sort.classList.add("nc-sort");
  toolbar.append(h("div", { class: "nc-row" }, h("span", { class: "nc-title", text: "Classes" }), h("span", { class: "nc-count" })), search, sort);

  function render() {
    clear(list);
    if (!k) { list.appendChild(message("This atlas has no classes.")); return; }
    const acc = array(model.get("accuracy"), "float32");  // (classes,)
    const hist = array(model.get("hist"), "float32");  // (classes, bins)
    const bins = hist.length ? hist.shape[1] : 0;
    const sim = array(model.get("similarity"), "float32");  // (classes, classes)
    const images = model.get("images") || [];
    const c = state.get("cls");
    const q = (model.get("query") || "").trim().toLowerCase();
    let order = names.map((_, i) => i).filter((i) => names[i].toLowerCase().includes(q));
    const by = model.get("sort");
    const accOf = (i) => (acc.length === k && !Number.isNaN(acc[i]) ? acc[i] : -1);
    const simOf = (i) => (sim.length === k * k && c >= 0 ? sim[c * k + i] : 0);
    if (by === "similarity" && c >= 0) order.sort((a, b) => (b === c) - (a === c) || simOf(b) - simOf(a) || a - b);
    else if (by === "accuracy-desc") order.sort((a, b) => accOf(b) - accOf(a) || a - b);
    else if (by === "accuracy-asc") order.sort((a, b) => accOf(a) - accOf(b) || a - b);
    else if (by === "name") order.sort((a, b) => names[a].localeCompare(names[b]));
    toolbar.querySelector(".nc-count").textContent = `${order.length} of ${k}`;
    for (const i of order) {
      const row = h("div", { class: `nc-class-row ${i === c ? "nc-on" : ""}`, dataset: { cls: i },
        on: { click: () => setShared(state, { cls: i }, ORIGIN) } });
      const text = h("div", { class: "nc-class-text" }, h("div", { class: "nc-class-name", text: names[i], title: names[i] }));
      const facts = [];
      if (acc.length === k) facts.push(`accuracy ${pct(acc[i])}`);
      if (images.length === k) facts.push(`${images[i]} images`);
      if (by === "similarity" && c >= 0 && i !== c && sim.length) facts.push(`similarity ${simOf(i).toFixed(2)}`);
      text.appendChild(h("div", { class: "nc-card-sub", text: facts.join(" · ") }));
      row.appendChild(text);
      if (acc.length === k) {
        const bar = h("div", { class: "nc-accbar", title: `accuracy ${pct(acc[i])}` }, h("div", { style: { width: `${Math.max(0, accOf(i)) * 100}%` } }));
        row.appendChild(bar);
      }
      if (bins > 0 && hist.length === k * bins) row.appendChild(histogram(Array.from(hist.subarray(i * bins, (i + 1) * bins))));
      list.appendChild(row);
    }
  }

  listen(state, ["change:cls"], () => {
    render();
    scrollWithin(list, list.querySelector(".nc-on"));  // the list, never the notebook
  }, signal);
  listen(model, ["change:sort", "change:query"], () => { sort.value = model.get("sort"); if (search.value !== model.get("query")) search.value = model.get("query"); render(); }, signal);
  listen(model, ["change:height"], setHeight, signal);
  render();
  const cleanup = () => root.remove();
  signal?.addEventListener("abort", cleanup);
  return cleanup;
}
