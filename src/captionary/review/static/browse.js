"use strict";
// Browse: a virtualised grid of every item in the workspace, filtered by an expression over its
// properties, decisions and errors; click an image to see it large with everything known about it.

const CELL = 168;  // px per grid cell, thumbnail included

views.browse = () => {
  const view = $("#view");
  const params = new URLSearchParams(location.hash.split("?")[1] || "");
  const query = el("input", { id: "query", type: "search", placeholder: "filter, e.g.  'dog' in tags and human_filter == 'keep'", value: params.get("q") || "", autocomplete: "off" });
  const by = el("select", { id: "by", title: "who made the learned calls (smart_filter, smart_tag, human_rank)" },
    el("option", { value: "", text: "any" }), el("option", { value: "human", text: "by a person" }),
    el("option", { value: "model", text: "by a model" }));
  by.value = params.get("by") || "";
  const count = el("span", { id: "count", class: "muted" });
  const grid = el("div", { class: "grid", id: "grid" });
  const spacer = el("div", { class: "spacer" });
  const detail = el("div", { class: "detail", id: "detail", hidden: "" });
  grid.append(spacer);
  let items = [];
  let drawn = new Map();
  let next = null;  // the cursor of the next page; null once every page is here
  let total = null;  // the server's count, when it knows it
  let loading = false;
  let generation = 0;  // a new query makes answers to the old one stale

  function layout() {
    const columns = Math.max(1, Math.floor(grid.clientWidth / CELL));
    spacer.style.height = `${Math.ceil(items.length / columns) * CELL}px`;
    const first = Math.max(0, Math.floor(grid.scrollTop / CELL) - 2) * columns;
    const last = Math.min(items.length, (Math.ceil((grid.scrollTop + grid.clientHeight) / CELL) + 2) * columns);
    const keep = new Map();
    for (let i = first; i < last; i++) {
      const item = items[i];
      let cell = drawn.get(item.id);
      if (!cell) {
        cell = el("button", { type: "button", class: `cell${item.dropped ? " dropped" : ""}`, title: item.name, "data-item": item.id, onclick: () => open(item) },
          el("img", { src: imageUrl(item), alt: item.name, draggable: "false" }));
        if (item.by) {
          const sure = item.confidence !== null && item.confidence !== undefined ? ` ${item.confidence.toFixed(2)}` : "";
          cell.append(el("span", { class: `by ${item.by}`, text: `${item.by}${sure}` }));
        }
        grid.append(cell);
      }
      cell.style.transform = `translate(${(i % columns) * CELL}px, ${Math.floor(i / columns) * CELL}px)`;
      keep.set(item.id, cell);
    }
    for (const [id, cell] of drawn) if (!keep.has(id)) cell.remove();
    drawn = keep;
    if (next !== null && last + 4 * columns >= items.length) more();  // near the end: the next page
  }

  function showCount() {
    const known = total !== null ? total : next === null ? items.length : null;
    count.textContent = known !== null ? `${known} item(s)` : `${items.length}+ item(s)…`;
  }

  async function more() {
    if (loading || next === null) return;
    loading = true;
    const asked = generation;
    const after = next === undefined ? "" : `&after=${encodeURIComponent(JSON.stringify(next))}`;
    try {
      const found = await api("GET", `/api/browse?q=${encodeURIComponent(fullQuery())}${after}`);
      if (asked !== generation) return;
      items = items.concat(found.items);
      next = found.next;
      if (found.total !== null) total = found.total;  // the first page counts
      showCount();
      count.classList.remove("error");
    } catch (error) {
      if (asked !== generation) return;
      next = null;
      count.textContent = error.message;
      count.classList.add("error");
    } finally {
      if (asked === generation) loading = false;
    }
    layout();
  }

  function fullQuery() {  // the typed filter, and who decided when chosen
    const typed = query.value.trim();
    if (!by.value) return typed;
    const who = `by == '${by.value}'`;
    return typed ? `(${typed}) and ${who}` : who;
  }

  function load() {
    generation += 1;
    loading = false;
    items = [];
    next = undefined;  // the first page
    total = null;
    count.textContent = "…";
    for (const cell of drawn.values()) cell.remove();
    drawn = new Map();
    grid.scrollTop = 0;
    more();
  }

  async function open(item) {
    const info = await api("GET", `/api/browse/${item.id}`);
    const rows = el("table", { class: "props" });
    const add = (key, value) => rows.append(el("tr", {}, el("th", { text: key }), el("td", { text: typeof value === "string" ? value : JSON.stringify(value) })));
    add("name", info.name);
    add("source", info.source || "");
    if (info.parent) {  // made by a fan-out step (a crop, a flip): the item it was made from
      const label = `${info.parent.name || "(not in the latest run)"} · ${info.parent.id.slice(0, 12)}`;
      const link = el("button", { type: "button", class: "link parent", onclick: () => open({ id: info.parent.id }) }, label);
      rows.append(el("tr", {}, el("th", { text: "parent" }), el("td", {}, link)));
    }
    if (info.dropped_by) add("dropped by", `${info.dropped_by}: ${info.drop_reason}`);
    if (info.learned && info.learned.by) {
      const sure = info.learned.confidence !== null ? `, confidence ${info.learned.confidence}` : "";
      add("learned calls by", `${info.learned.by}${sure}`);
    }
    for (const [key, value] of Object.entries(info.props)) if (key !== "parent" || !info.parent) add(key, value);
    for (const [task, decision] of Object.entries(info.decisions)) add(`decision: ${task}`, decision.value);
    for (const error of info.errors) add(`error (run ${error.run})`, `${error.step}: ${error.reason}`);
    detail.replaceChildren(
      el("button", { type: "button", class: "close", onclick: close }, "close ✕"),
      el("img", { src: imageUrl(info, "large"), alt: info.name }),
      rows);
    detail.hidden = false;
  }

  function close() { detail.hidden = true; detail.replaceChildren(); }
  function onKey(event) { if (event.key === "Escape") close(); }

  let timer = null;
  query.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(load, 250); });
  by.addEventListener("change", load);
  grid.addEventListener("scroll", () => requestAnimationFrame(layout));
  window.addEventListener("resize", layout);
  document.addEventListener("keydown", onKey);
  $("#title").textContent = "browse";
  view.replaceChildren(el("section", { class: "browse" }, el("div", { class: "row" }, query, by, count), grid, detail));
  load();
  return {
    leave() {
      window.removeEventListener("resize", layout);
      document.removeEventListener("keydown", onKey);
    },
  };
};
