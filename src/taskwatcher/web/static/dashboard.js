// The dashboard: one card per running, queued or reserved task, kept current by the event
// stream (no reload); timers tick here between events; recent history below.
"use strict";

(() => {
  const { el, api, duration, status, progressOf, feedbackText, historyRows, newestFirst, live, lineText } = TW;
  const cards = document.getElementById("tasks");
  const known = new Map(); // taskid -> {data, seen (ms), card}

  function card(taskid) {
    const c = el("article", { class: "card", "data-taskid": taskid },
      el("header", {},
        el("a", { class: "title", href: "/tasks/" + encodeURIComponent(taskid) },
          el("span", { class: "muted", text: "#" + taskid + " " }), el("span", { class: "name" })),
        el("span", { class: "status" })),
      el("div", { class: "bar" }, el("progress", { max: "100" }), el("span", { class: "pct" })),
      el("p", { class: "fb" }),
      el("p", { class: "meta" }));
    return c;
  }

  function render(entry) {
    const { data, card: c } = entry;
    const t = data.task;
    c.querySelector(".name").textContent = t.name || "(no name)";
    const st = c.querySelector(".status");
    st.replaceWith(status(t.status));
    const p = progressOf(data.latest);
    const bar = c.querySelector(".bar");
    bar.hidden = p === null;
    if (p !== null) {
      bar.querySelector("progress").value = p;
      bar.querySelector(".pct").textContent = Math.round(p) + "%";
    }
    c.querySelector(".fb").textContent = feedbackText(data.latest, true);
    c.classList.toggle("reserved", t.status === "RESERVED");
    tick(entry);
  }

  // The timers as of now: the event's values plus the time since it came.
  function tick(entry) {
    const { data, seen, card: c } = entry;
    const t = data.task, gone = (Date.now() - seen) / 1000;
    const parts = [];
    if (t.status === "RESERVED") {
      if (t.expiretime) parts.push("reserved, expires in " + duration(t.expiretime - data.time - gone));
    } else {
      if (t.duration !== null) parts.push("running " + duration(t.duration + gone));
      if (t.timer !== null && t.feedback) parts.push("heartbeat " + duration(t.timer + gone) + " ago");
      if (t.timeout) parts.push("timeout " + duration(t.timeout));
      if (t.pid) parts.push("pid " + t.pid + (t.host ? " on " + t.host : ""));  // many hosts: which one
    }
    const line = lineText(t);
    if (line) parts.push(line);
    for (const info of [t.info1, t.info2, t.info3]) if (info) parts.push(info);
    c.querySelector(".meta").textContent = parts.join(" · ");
  }

  function placed() {
    const ids = [...known.keys()].sort((a, b) => Number(a) - Number(b));
    cards.replaceChildren(...ids.map((id) => known.get(id).card));
    document.getElementById("no-tasks").hidden = ids.length > 0;
    document.getElementById("count").textContent = ids.length ? String(ids.length) : "";
  }

  let historyDue = null;
  async function loadHistory() {
    historyDue = null;
    try {
      const history = await (await api("/history?last=10")).json();
      const rows = newestFirst(history);
      historyRows(document.querySelector("#recent tbody"), rows);
      document.getElementById("no-history").hidden = rows.length > 0;
    } catch (e) { /* shown again at the next end */ }
  }

  live({
    reset() { known.clear(); placed(); },
    task(data) {
      let entry = known.get(data.taskid);
      if (!entry) {
        entry = { card: card(data.taskid) };
        known.set(data.taskid, entry);
        entry.data = data; entry.seen = Date.now();
        placed();
      }
      entry.data = data; entry.seen = Date.now();
      render(entry);
    },
    ended(data) {
      known.delete(data.taskid);
      placed();
      if (!historyDue) historyDue = setTimeout(loadHistory, 300);
    },
  });
  setInterval(() => known.forEach(tick), 1000);
  loadHistory();
})();
