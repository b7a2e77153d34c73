"use strict";
// The review screen for one task: filter (keep/reject), tag (fixed list + free tags) or caption.
// Keyboard first; touch swipes on phones; the next images are preloaded and decoded before they show.

const PRELOAD = 3;
const STRIP = 6;
const SWIPE = 70;  // px

window.captionaryTimings = [];  // key press -> next image painted, ms (read by benchmarks/review.py)

views.review = (taskName) => {
  const state = { task: null, items: [], decisions: {}, index: 0, undo: [], cache: new Map(), poll: null };
  const view = $("#view");
  view.replaceChildren(el("p", { class: "muted", text: "loading…" }));

  const stage = el("div", { class: "stage", id: "stage" });
  const meta = el("div", { class: "meta", id: "meta" });
  const controls = el("div", { class: "controls", id: "controls" });
  const strip = el("div", { class: "strip", id: "strip" });
  const runLine = el("div", { class: "run muted", id: "run" });
  const seek = el("input", { type: "range", id: "seek", min: "0", value: "0", "aria-label": "go to image" });
  seek.addEventListener("input", () => go(Number(seek.value)));
  seek.addEventListener("change", () => seek.blur());  // let go of it: the keys work again

  function isDecided(item) { return Object.prototype.hasOwnProperty.call(state.decisions, item.id); }

  function firstUndecided(from = 0) {
    for (let i = from; i < state.items.length; i++) if (!isDecided(state.items[i])) return i;
    return state.items.length;
  }

  function loaded(item) {
    // A decoded <img> per item, made once; showing it is then only swapping an element.
    let entry = state.cache.get(item.id);
    if (!entry) {
      const img = new Image();
      img.alt = item.name;
      img.dataset.item = item.id;
      img.className = "current";
      img.draggable = false;
      img.src = imageUrl(item);
      entry = { img, ready: img.decode().catch(() => undefined) };
      state.cache.set(item.id, entry);
    }
    return entry;
  }

  function preload() {
    for (let i = state.index + 1; i <= state.index + PRELOAD && i < state.items.length; i++) loaded(state.items[i]);
    for (const [id, entry] of state.cache) {  // keep memory bounded
      const at = state.items.findIndex((item) => item.id === id);
      if (at < state.index - STRIP || at > state.index + PRELOAD + STRIP) { state.cache.delete(id); entry.img.src = ""; }
    }
  }

  function progress() {
    const decided = state.items.filter(isDecided).length;
    $("#progress").textContent = `${decided} / ${state.items.length} decided`;
    $("#progress").dataset.decided = String(decided);
  }

  function show(pressed) {
    progress();
    const item = state.items[state.index];
    if (!item) {
      stage.replaceChildren(el("div", { class: "done", id: "done" },
        el("p", { text: state.items.length ? `All ${state.items.length} images seen.` : "No images in this task yet." }),
        el("p", { class: "muted", id: "done-note", text: state.finished || "New images appear here while the run streams them in." })));
      stage.dataset.item = "";
      meta.replaceChildren();
      controls.replaceChildren(button("← back", "back", () => go(state.index - 1)));
      renderStrip();
      return;
    }
    const entry = loaded(item);
    stage.replaceChildren(entry.img);
    stage.dataset.item = item.id;
    stage.dataset.index = String(state.index);
    if (pressed !== undefined) {
      requestAnimationFrame(() => setTimeout(() => window.captionaryTimings.push(performance.now() - pressed), 0));
    }
    renderMeta(item);
    preload();
    // The strip's small images are decoded after the main image is on screen, not in its frame.
    requestAnimationFrame(() => setTimeout(renderStrip, 0));
  }

  function updateBadge() {
    const item = state.items[state.index];
    const badge = $("#decision");
    if (!item || !badge) return;
    const decided = state.decisions[item.id];
    badge.textContent = decided === undefined ? "undecided" : Array.isArray(decided) ? decided.join(", ") || "(no tags)" : state.task.kind === "caption" ? "captioned" : decided;
    badge.dataset.value = decided === undefined ? "" : JSON.stringify(decided);
  }

  function renderMeta(item) {
    const kind = state.task.kind;
    meta.replaceChildren(el("span", { class: "name", text: item.name }), el("span", { class: "badge", id: "decision" }));
    updateBadge();
    if (kind === "filter") {
      if (item.caption) meta.append(el("p", { class: "caption", text: item.caption }));
      controls.replaceChildren(
        button("✕ reject", "reject", () => decide("reject")),
        button("skip", "skip", () => go(state.index + 1)),
        button("keep ✓", "keep", () => decide("keep")),
        button("undo", "undo", undo),
      );
    } else if (kind === "tag") {
      renderTags(item);
    } else {
      renderCaption(item);
    }
  }

  function button(label, id, action) {
    return el("button", { type: "button", id: `btn-${id}`, class: `action ${id}`, onclick: action }, label);
  }

  // --- tag -----------------------------------------------------------------------------------------
  let selected = [];
  function renderTags(item) {
    const decided = state.decisions[item.id];
    selected = Array.isArray(decided) ? [...decided] : [...(item.tags || [])];
    const list = el("div", { class: "tags", id: "tags" });
    const fixed = state.task.config.tags || [];
    const draw = () => {
      list.replaceChildren();
      fixed.forEach((tag, i) => {
        const key = i < 10 ? String((i + 1) % 10) : "";
        const on = selected.includes(tag);
        list.append(el("button", { type: "button", class: `tag${on ? " on" : ""}`, "data-tag": tag, "aria-pressed": String(on), onclick: () => { toggle(tag); } },
          key ? el("kbd", { text: key }) : "", ` ${tag}`));
      });
      for (const tag of selected.filter((t) => !fixed.includes(t))) {
        list.append(el("button", { type: "button", class: "tag on free", "data-tag": tag, "aria-pressed": "true", onclick: () => toggle(tag) }, tag));
      }
    };
    const toggle = (tag) => {
      selected = selected.includes(tag) ? selected.filter((t) => t !== tag) : [...selected, tag];
      draw();
    };
    state.toggleTag = (n) => { if (fixed[n] !== undefined) toggle(fixed[n]); };
    draw();
    const parts = [list];
    if (state.task.config.free_tags) {
      const input = el("input", { id: "free-tag", list: "known-tags", placeholder: "add a tag (t), Enter", autocomplete: "off" });
      const known = el("datalist", { id: "known-tags" }, ...(state.known || []).map((t) => el("option", { value: t })));
      input.addEventListener("keydown", (event) => {
        if (event.key === "Enter" && input.value.trim()) {
          event.preventDefault();
          const tag = input.value.trim();
          if (!selected.includes(tag)) toggle(tag);
          input.value = "";
        } else if (event.key === "Escape") input.blur();
        event.stopPropagation();
      });
      parts.push(input, known);
    }
    controls.replaceChildren(...parts, el("div", { class: "row" },
      button("← prev", "prev", () => go(state.index - 1)),
      button("save ⏎", "save", () => decide([...selected])),
      button("undo", "undo", undo)));
  }

  // --- caption -------------------------------------------------------------------------------------
  function renderCaption(item) {
    const decided = state.decisions[item.id];
    const box = el("textarea", { id: "caption", rows: "4", spellcheck: "true" });
    box.value = typeof decided === "string" ? decided : item.caption || "";
    box.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        decide(box.value, event.timeStamp);
        const next = $("#caption");  // the next image's box, drawn by now: keep typing
        if (next) next.focus();
      } else if (event.key === "Escape") box.blur();
      event.stopPropagation();  // typing never navigates
    });
    controls.replaceChildren(box, el("div", { class: "row" },
      button("← prev", "prev", () => go(state.index - 1)),
      button("save ⌃⏎", "save", () => decide(box.value)),
      button("undo", "undo", undo)));
  }

  // --- strip: recent and coming images, click to go back to any of them -----------------------------
  function renderStrip() {
    seek.max = String(Math.max(0, state.items.length - 1));
    seek.value = String(state.index);
    strip.replaceChildren();
    const from = Math.max(0, state.index - STRIP);
    const to = Math.min(state.items.length, state.index + STRIP + 1);
    for (let i = from; i < to; i++) {
      const item = state.items[i];
      const value = state.decisions[item.id];
      const cls = `cell${i === state.index ? " here" : ""}${value === "reject" ? " rejected" : ""}${value !== undefined ? " decided" : ""}`;
      const img = el("img", { src: imageUrl(item), alt: item.name, loading: "lazy", draggable: "false" });
      strip.append(el("button", { type: "button", class: cls, title: item.name, onclick: () => go(i) }, img));
    }
  }

  // --- actions -------------------------------------------------------------------------------------
  function go(index, pressed) {
    state.index = Math.max(0, Math.min(index, state.items.length));
    show(pressed);
  }

  function decide(value, pressed) {
    const item = state.items[state.index];
    if (!item) return;
    state.undo.push({ index: state.index, item: item.id, previous: state.decisions[item.id] });
    state.decisions[item.id] = value;
    saves.push(state.task.name, item.id, value);
    go(state.index + 1, pressed);
  }

  function undo() {
    const last = state.undo.pop();
    if (!last) return;
    if (last.previous === undefined) delete state.decisions[last.item];
    else state.decisions[last.item] = last.previous;
    saves.push(state.task.name, last.item, last.previous === undefined ? null : last.previous);
    go(last.index);
  }

  function onKey(event) {
    if (event.target.closest && event.target.closest("input, textarea")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const kind = state.task && state.task.kind;
    const t = event.timeStamp;
    let handled = true;
    if (event.key === "?") openHelp($("#help").hidden);
    else if (event.key === "Escape") openHelp(false);
    else if (event.key === "z") undo();
    else if (event.key === "[") go(state.index - 1, t);
    else if (event.key === "]") go(state.index + 1, t);
    else if (kind === "filter" && (event.key === "ArrowRight" || event.key === "d")) decide("keep", t);
    else if (kind === "filter" && (event.key === "ArrowLeft" || event.key === "a")) decide("reject", t);
    else if (kind === "filter" && event.key === "s") go(state.index + 1, t);
    else if (kind !== "filter" && event.key === "ArrowRight") go(state.index + 1, t);
    else if (kind !== "filter" && event.key === "ArrowLeft") go(state.index - 1, t);
    else if (kind === "tag" && /^[0-9]$/.test(event.key)) state.toggleTag((Number(event.key) + 9) % 10);
    else if (kind === "tag" && event.key === "Enter") decide([...selected], t);
    else if (kind === "tag" && event.key === "t" && $("#free-tag")) $("#free-tag").focus();
    else if (kind === "caption" && event.key === "Enter") $("#caption").focus();
    else handled = false;
    if (handled) event.preventDefault();
  }

  // --- touch: swipe right keeps, left rejects (filter); next / previous otherwise -------------------
  let touch = null;
  function onTouchStart(event) {
    if (event.touches.length !== 1) return;
    touch = { x: event.touches[0].clientX, y: event.touches[0].clientY, dx: 0 };
  }
  function onTouchMove(event) {
    if (!touch) return;
    touch.dx = event.touches[0].clientX - touch.x;
    const img = stage.firstElementChild;
    if (img) img.style.transform = `translateX(${touch.dx}px) rotate(${touch.dx / 40}deg)`;
    event.preventDefault();
  }
  function onTouchEnd() {
    if (!touch) return;
    const dx = touch.dx;
    touch = null;
    const img = stage.firstElementChild;
    if (img) img.style.transform = "";
    const kind = state.task.kind;
    if (dx > SWIPE) kind === "filter" ? decide("keep") : go(state.index + 1);
    else if (dx < -SWIPE) kind === "filter" ? decide("reject") : go(state.index - 1);
  }
  stage.addEventListener("touchstart", onTouchStart, { passive: true });
  stage.addEventListener("touchmove", onTouchMove, { passive: false });
  stage.addEventListener("touchend", onTouchEnd);

  // --- new items while a run streams them in, and the run's progress ---------------------------------
  const counts = (steps) => steps.map((s) => `${s.name} ${s.out}${s.failed ? ` (${s.failed} failed)` : ""}`).join(" → ");
  async function showRun() {
    if (state.finished) return;
    try {
      const run = await api("GET", "/api/run");
      if (run.running && run.steps.length && run.steps.every((s) => s.done)) {
        state.finished = "The run is complete: " + counts(run.steps);  // its server stops next
        runLine.textContent = state.finished;
        const note = $("#done-note");
        if (note) note.textContent = state.finished;
      } else {
        runLine.textContent = run.running ? "run: " + counts(run.steps) : "";
      }
    } catch (error) {
      runLine.textContent = "the review server is not answering: the run was stopped, or it ended while this page was away";
    }
  }

  async function refresh() {
    showRun();
    if (state.finished) { clearInterval(state.poll); return; }
    const last = state.items.length ? state.items[state.items.length - 1].position : -1;
    try {
      const here = state.items[state.index];
      const at = here ? `&at=${here.position}` : "";  // the server makes thumbnails ahead of the person
      const since = `&since=${state.since - 5}`;  // decisions made elsewhere (another device or tab)
      const fresh = await api("GET", `/api/tasks/${encodeURIComponent(taskName)}?after=${last}${at}${since}`);
      state.since = fresh.now;
      const mine = new Set(saves.queue.map((save) => save.item));  // not yet saved here: ours wins
      let changed = false;
      for (const [id, value] of Object.entries(fresh.changed)) {
        if (!mine.has(id) && JSON.stringify(state.decisions[id]) !== JSON.stringify(value)) {
          state.decisions[id] = value;
          changed = true;
        }
      }
      if (changed && !fresh.items.length) { progress(); renderStrip(); updateBadge(); }
      if (fresh.items.length) {
        const wasDone = state.index >= state.items.length;
        state.items.push(...fresh.items);
        Object.assign(state.decisions, fresh.decisions);
        if (wasDone) show(); else { progress(); renderStrip(); preload(); }
      }
    } catch (error) { /* the server is restarting: try again later */ }
  }

  document.addEventListener("keydown", onKey);
  api("GET", `/api/tasks/${encodeURIComponent(taskName)}`).then((task) => {
    if (task.kind === "rank") { location.replace(`#/rank/${encodeURIComponent(taskName)}`); return; }
    state.task = task;
    state.items = task.items;
    state.decisions = task.decisions;
    state.known = task.known_tags;
    state.since = task.now;
    $("#title").textContent = `${task.name} (${task.kind})`;
    view.replaceChildren(el("section", { class: `review ${task.kind}` }, stage, meta, controls, strip, seek, runLine));
    view.dataset.task = task.name;
    state.index = firstUndecided();
    show();
    showRun();
    state.poll = setInterval(refresh, 2000);
  }).catch((error) => view.replaceChildren(el("p", { class: "error", text: error.message })));

  return {
    leave() {
      document.removeEventListener("keydown", onKey);
      clearInterval(state.poll);
    },
  };
};
