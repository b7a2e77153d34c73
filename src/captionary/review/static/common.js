"use strict";
// Shared helpers: DOM building, the API, the save queue (every decision retried until committed), routing.

const $ = (selector) => document.querySelector(selector);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body === undefined ? {} : { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (!response.ok) {
    let detail = response.statusText;
    try { detail = (await response.json()).detail || detail; } catch (e) { /* not JSON */ }
    const error = new Error(`${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return response.json();
}

function imageUrl(item, size = "thumb") {
  return `/api/image/${item.id}/${encodeURIComponent(item.image)}?size=${size}`;
}

// Decisions go out in order, one at a time; a failed save stays queued and is retried with backoff.
const saves = {
  queue: [],
  running: false,
  acked: [],  // {task, item, value} in the order the server committed them
  listeners: [],
  push(task, item, value, request) {  // request: {method, path, body} for other routes (rank answers)
    this.queue.push({ task, item, value, request, pair: request && request.pair });
    this.show();
    this.run();
  },
  async run() {
    if (this.running) return;
    this.running = true;
    let delay = 250;
    while (this.queue.length) {
      const next = this.queue[0];
      const path = `/api/tasks/${encodeURIComponent(next.task)}/items/${next.item}`;
      try {
        if (next.request) await api(next.request.method, next.request.path, next.request.body);
        else if (next.value === null) await api("DELETE", path);
        else await api("PUT", path, { value: next.value });
        this.queue.shift();
        this.acked.push(next);
        delay = 250;
        this.listeners.forEach((listener) => listener(next));
        this.show();
      } catch (error) {
        if (error.status === 400 || error.status === 404) {  // refused: retrying cannot help
          this.queue.shift();
          this.show(`not saved: ${error.message}`);
          continue;
        }
        this.show(`save failed (${error.message}); retrying`);
        await new Promise((resolve) => setTimeout(resolve, delay));
        delay = Math.min(delay * 2, 5000);
      }
    }
    this.running = false;
  },
  show(problem) {
    const status = $("#save-status");
    status.dataset.pending = String(this.queue.length);
    status.dataset.acked = String(this.acked.length);
    if (problem) {
      status.dataset.state = "error";
      status.textContent = problem;
    } else if (this.queue.length) {
      status.dataset.state = "saving";
      status.textContent = `saving ${this.queue.length}…`;
    } else {
      status.dataset.state = "saved";
      status.textContent = "saved";
    }
  },
};

window.addEventListener("beforeunload", (event) => {
  if (saves.queue.length) event.preventDefault();  // unsaved decisions: ask before leaving
});

const views = {};
let currentView = null;

function route() {
  if (currentView && currentView.leave) currentView.leave();
  const hash = location.hash || "#/";
  $("#title").textContent = "";
  $("#progress").textContent = "";
  let match;
  if ((match = hash.match(/^#\/task\/(.+)$/))) currentView = views.review(decodeURIComponent(match[1]));
  else if ((match = hash.match(/^#\/rank\/(.+)$/))) currentView = views.rank(decodeURIComponent(match[1]));
  else if (hash.startsWith("#/browse")) currentView = views.browse();
  else currentView = views.home();
}

views.home = () => {
  const view = $("#view");
  view.replaceChildren(el("p", { class: "muted", text: "loading…" }));
  api("GET", "/api/tasks").then((tasks) => {
    if (tasks.length === 1 && !sessionStorage.getItem("captionary-home")) {  // one task: straight to it
      sessionStorage.setItem("captionary-home", "1");
      location.replace(`#/${tasks[0].kind === "rank" ? "rank" : "task"}/${encodeURIComponent(tasks[0].name)}`);
      return;
    }
    const list = el("ul", { class: "tasks" });
    for (const task of tasks) {
      const link = el("a", { href: `#/${task.kind === "rank" ? "rank" : "task"}/${encodeURIComponent(task.name)}` }, `${task.name}`);
      const count = task.kind === "rank" ? `${task.total} images` : `${task.decided} / ${task.total} decided`;
      list.append(el("li", {}, link, el("span", { class: "muted", text: ` ${task.kind} · ${count}` })));
    }
    if (!tasks.length) list.append(el("li", { class: "muted", text: "no review tasks yet: add a human step to a pipeline" }));
    view.replaceChildren(el("h1", { text: "Review tasks" }), list, el("p", {}, el("a", { href: "#/browse" }, "Browse the workspace")));
  }).catch((error) => view.replaceChildren(el("p", { class: "error", text: error.message })));
  return {};
};

function openHelp(open) {
  $("#help").hidden = !open;
}

window.addEventListener("DOMContentLoaded", () => {
  if (new URLSearchParams(location.search).has("token")) {
    history.replaceState(null, "", "/" + location.hash);  // the cookie holds the token from now on
  }
  $("#help-button").addEventListener("click", () => openHelp(true));
  $("#help-close").addEventListener("click", () => openHelp(false));
  window.addEventListener("hashchange", route);
  route();
});
