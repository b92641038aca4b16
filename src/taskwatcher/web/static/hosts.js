// Hosts: a card per host the tasks and the recent history name (its running tasks, the newest
// heartbeat, its recent ends, host lost among them), read again when a task changes.
"use strict";

(() => {
  const { el, api, duration, when, status, outcome, live } = TW;
  const box = document.getElementById("hosts");
  let shown = null; // the last answer, and when it came (for the "ago" timers)

  function hostCard(name, h, here) {
    const running = h.running.length, lost = h.lost;
    // Lost: nothing runs there now, and its newest end is a lease that ran out.
    const gone = !running && h.recent.length > 0 && h.recent[0].termerror === "host lost";
    const head = el("header", {},
      el("span", { class: "title" }, el("span", { class: "name", text: name }),
        here ? el("span", { class: "muted", text: " · this server" }) : null),
      el("span", { class: "status " + (gone ? "s-stalled" : running ? "s-running" : "s-finished"),
        text: gone ? "LOST" : running ? "ACTIVE" : "IDLE" }));
    const facts = el("p", { class: "meta" });
    const lostNote = el("p", { class: "outcome fail lost-note" });
    const tasks = el("ul", { class: "host-tasks" });
    for (const t of [...h.running, ...h.waiting]) {
      tasks.append(el("li", {},
        el("a", { href: "/tasks/" + encodeURIComponent(t.taskid), text: "#" + t.taskid }), " ",
        el("span", { class: "name", text: t.name || "(no name)" }), " ", status(t.status)));
    }
    const ends = el("ul", { class: "host-ends" });
    for (const e of h.recent) {
      const o = outcome(e);
      ends.append(el("li", {},
        el("a", { href: "/tasks/" + encodeURIComponent(e.taskid), text: "#" + e.taskid }), " ",
        el("span", { class: "name", text: e.taskname || "" }), " ",
        el("span", { class: "outcome " + (o.ok ? "ok" : "fail"), text: o.text }), " ",
        el("span", { class: "muted", text: when(e.endtime) })));
    }
    const c = el("article", { class: "card host" + (gone ? " lost" : ""), "data-host": name }, head, facts, lostNote,
      running || h.waiting.length ? tasks : el("p", { class: "empty", text: "No task runs here." }),
      h.recent.length ? el("h3", { text: "Recent ends" }) : null, h.recent.length ? ends : null);
    c.tick = () => {
      const ago = (Date.now() - shown.seen) / 1000, parts = [];
      parts.push(running + " running");
      if (h.waiting.length) parts.push(h.waiting.length + " waiting");
      if (h.heartbeat) parts.push("heartbeat " + duration(shown.data.time - h.heartbeat + ago) + " ago");
      parts.push(h.ended + " ended");
      facts.textContent = parts.join(" · ");
      lostNote.textContent = lost ? lost + " host lost (its lease ran out)" : "";
      lostNote.hidden = !lost;
    };
    return c;
  }

  function render() {
    const { data } = shown, names = Object.keys(data.hosts);
    box.replaceChildren(...names.map((n) => hostCard(n, data.hosts[n], n === data.this)));
    box.querySelectorAll("article").forEach((c) => c.tick());
    document.getElementById("count").textContent = String(names.length);
    document.getElementById("where").textContent = (data.shared
      ? "Every host sharing this PostgreSQL database"
      : "A SQLite database: the tasks of this machine") + "; ends since " + when(data.since) + ".";
  }

  let due = null;
  async function load() {
    due = null;
    try {
      const data = await (await api("/hosts")).json();
      shown = { data, seen: Date.now() };
      render();
      document.getElementById("error").hidden = true;
    } catch (e) {
      const m = document.getElementById("error");
      m.textContent = e.message;
      m.hidden = false;
    }
  }
  const soon = () => { if (!due) due = setTimeout(load, 300); };
  live({ reset: soon, task: soon, ended: soon });
  setInterval(() => shown && box.querySelectorAll("article").forEach((c) => c.tick && c.tick()), 1000);
  load();
})();
