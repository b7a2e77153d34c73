"use strict";
// The ranking screen: two images, which is better? Keys a/← left, d/→ right, s can't tell, z undo;
// on a phone the two are stacked: tap one, or swipe ← (the first) / → (the second).
// Pairs come from the server (chosen from a fit of the stored answers) a few ahead, their images
// decoded before they show; every answer goes through the save queue (committed, or retried).

const RANK_AHEAD = 3;

window.captionaryRankShown = [];  // pair keys in the order shown (read by the tests)

views.rank = (taskName) => {
  const state = { queue: [], current: null, asked: new Set(), undo: [], progress: null, fetching: false, poll: null, more: false };
  const view = $("#view");
  view.replaceChildren(el("p", { class: "muted", text: "loading…" }));
  const pairView = el("div", { class: "pair", id: "pair" });
  const controls = el("div", { class: "controls", id: "controls" });
  const runLine = el("div", { class: "run muted", id: "run" });
  const base = `/api/rank/${encodeURIComponent(taskName)}`;
  const key = (a, b) => (a < b ? `${a}:${b}` : `${b}:${a}`);

  function picture(item) {
    const img = new Image();
    img.alt = item.name;
    img.dataset.item = item.id;
    img.draggable = false;
    img.src = imageUrl(item, "large");
    return { img, ready: img.decode().catch(() => undefined) };
  }

  function unsaved() {  // pairs sent or queued here that the server may not have stored yet
    const sent = saves.queue.filter((save) => save.pair).map((save) => save.pair);
    return sent.concat(state.queue.map((pair) => `${pair.left.id}:${pair.right.id}`));
  }

  async function fill() {
    if (state.fetching || state.queue.length >= RANK_AHEAD) return;
    state.fetching = true;
    try {
      const pending = unsaved().concat(state.current ? [`${state.current.left.id}:${state.current.right.id}`] : []);
      const avoid = state.queue.concat(state.current ? [state.current] : []).flatMap((p) => [p.left.id, p.right.id]);
      const found = await api("GET", `${base}?n=${RANK_AHEAD - state.queue.length}&pending=${pending.join(",")}&avoid=${avoid.join(",")}`);
      state.progress = found.progress;
      state.exhausted = found.pairs.length === 0;
      const queued = new Set(state.queue.map((p) => key(p.left.id, p.right.id)));
      if (state.current) queued.add(key(state.current.left.id, state.current.right.id));
      for (const pair of found.pairs) {
        const k = key(pair.left.id, pair.right.id);
        if (state.asked.has(k) || queued.has(k)) continue;  // never the same pair twice
        queued.add(k);
        state.queue.push({ ...pair, pictures: [picture(pair.left), picture(pair.right)] });
      }
    } catch (error) {
      runLine.textContent = `cannot get the next pairs: ${error.message}`;
    } finally {
      state.fetching = false;
    }
    if (!state.current) show();
    else showProgress();
  }

  function showProgress() {
    const p = state.progress;
    if (!p) return;
    const tau = p.target ? ` · expected τ ${p.expected_tau.toFixed(2)} → ${p.target}` : "";
    $("#progress").textContent = `${p.comparisons} / ${p.budget} comparisons${tau}`;
    $("#progress").dataset.comparisons = String(p.comparisons);
    $("#progress").dataset.done = String(p.done);
  }

  function show(pressed) {
    showProgress();
    if (state.progress && state.progress.done && !state.more) {
      state.current = null;
      pairView.replaceChildren(el("div", { class: "done", id: "done" },
        el("p", { text: `Ranking done: ${state.progress.reason}.` }),
        el("p", { class: "muted", text: "The run goes on with the scores. More answers refine the next run's ranking." })));
      pairView.dataset.pair = "";
      controls.replaceChildren(button("keep ranking", "more", () => { state.more = true; show(); }), button("undo", "undo", undo));
      return;
    }
    state.current = state.queue.shift() || null;
    if (!state.current) {
      const last = state.exhausted && !state.fetching;
      pairView.replaceChildren(el("p", { class: "muted", id: "waiting", text: last ? "no pair left to ask" : "choosing the next pair…" }));
      pairView.dataset.pair = "";
      if (!last) fill();
      return;
    }
    const { left, right, pictures } = state.current;
    const side = (item, picture, which, label) => {
      picture.img.className = "current";
      return el("figure", { class: `side ${which}`, id: which, onclick: () => answer(which) },
        picture.img, el("figcaption", { class: "muted" }, el("kbd", { text: label }), ` ${item.name}`));
    };
    pairView.replaceChildren(side(left, pictures[0], "left", "a ←"), side(right, pictures[1], "right", "d →"));
    pairView.dataset.pair = `${left.id}:${right.id}`;
    window.captionaryRankShown.push(key(left.id, right.id));
    if (pressed !== undefined) {
      requestAnimationFrame(() => setTimeout(() => window.captionaryTimings.push(performance.now() - pressed), 0));
    }
    controls.replaceChildren(
      button("← left is better", "left", () => answer("left")),
      button("can't tell", "tie", () => answer(null)),
      button("right is better →", "right", () => answer("right")),
      button("undo", "undo", undo));
    fill();
  }

  function button(label, id, action) {
    return el("button", { type: "button", id: `btn-${id}`, class: `action ${id}`, onclick: action }, label);
  }

  function answer(winner, pressed) {
    const pair = state.current;
    if (!pair) return;
    const k = key(pair.left.id, pair.right.id);
    state.asked.add(k);
    state.undo.push(pair);
    saves.push(taskName, null, null, {
      method: "PUT", path: `${base}/pairs`, body: { left: pair.left.id, right: pair.right.id, winner }, pair: `${pair.left.id}:${pair.right.id}`,
    });
    if (state.progress) state.progress.comparisons += 1;  // the server's count follows with the next pairs
    state.current = null;
    show(pressed);
  }

  function undo() {
    const pair = state.undo.pop();
    if (!pair) return;
    state.asked.delete(key(pair.left.id, pair.right.id));
    state.exhausted = false;
    saves.push(taskName, null, null, { method: "DELETE", path: `${base}/pairs/${pair.left.id}/${pair.right.id}` });
    if (state.progress) { state.progress.comparisons -= 1; state.progress.done = false; }
    if (state.current) state.queue.unshift(state.current);
    state.queue.unshift(pair);
    state.current = null;
    show();
  }

  function onKey(event) {
    if (event.target.closest && event.target.closest("input, textarea")) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const t = event.timeStamp;
    let handled = true;
    if (event.key === "?") openHelp($("#help").hidden);
    else if (event.key === "Escape") openHelp(false);
    else if (event.key === "z") undo();
    else if (event.key === "ArrowLeft" || event.key === "a") answer("left", t);
    else if (event.key === "ArrowRight" || event.key === "d") answer("right", t);
    else if (event.key === "s") answer(null, t);
    else handled = false;
    if (handled) event.preventDefault();
  }

  // --- touch: swipe ← the first (left / top) image is better, → the second -------------------------
  let touch = null;
  pairView.addEventListener("touchstart", (event) => {
    if (event.touches.length === 1) touch = { x: event.touches[0].clientX, dx: 0 };
  }, { passive: true });
  pairView.addEventListener("touchmove", (event) => {
    if (!touch) return;
    touch.dx = event.touches[0].clientX - touch.x;
    pairView.style.transform = `translateX(${touch.dx / 3}px)`;
    event.preventDefault();
  }, { passive: false });
  pairView.addEventListener("touchend", () => {
    if (!touch) return;
    const dx = touch.dx;
    touch = null;
    pairView.style.transform = "";
    if (dx < -SWIPE) answer("left");
    else if (dx > SWIPE) answer("right");
  });

  async function refresh() {
    try {
      const run = await api("GET", "/api/run");
      runLine.textContent = run.running
        ? "run: " + run.steps.map((s) => `${s.name} ${s.out}${s.failed ? ` (${s.failed} failed)` : ""}`).join(" → ")
        : "";
      const found = await api("GET", `${base}?n=0`);
      const wasDone = state.progress && state.progress.done;
      state.progress = found.progress;
      if (found.progress.done && !wasDone && !state.more) show();
      else showProgress();
    } catch (error) { runLine.textContent = "the review server is not answering (the run may be over)"; }
  }

  document.addEventListener("keydown", onKey);
  $("#title").textContent = `${taskName} (rank)`;
  view.replaceChildren(el("section", { class: "review rank" }, pairView, controls, runLine));
  view.dataset.task = taskName;
  fill();
  refresh();
  state.poll = setInterval(refresh, 2000);
  return {
    leave() {
      document.removeEventListener("keydown", onKey);
      clearInterval(state.poll);
    },
  };
};
