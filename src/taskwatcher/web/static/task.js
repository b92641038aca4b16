// A task's page: every fact and feedback key, kept current by the event stream; its log
// read on from the last offset while it runs; Kill after a confirmation.
"use strict";

(() => {
  const { el, api, duration, when, status, progressOf, commandText, live, lineText, outcome } = TW;
  const taskid = document.body.dataset.taskid;
  const readOnly = document.body.dataset.readOnly === "1";
  const logBox = document.getElementById("log");
  const KEEP = 256 * 1024; // characters of the log kept on the page
  let detail = null, finished = false, offset = 0, decoder = new TextDecoder();

  function say(text) {
    const m = document.getElementById("message");
    m.textContent = text || "";
    m.hidden = !text;
  }

  function fact(dl, name, value) {
    if (value === null || value === undefined || value === "") return;
    dl.append(el("dt", { text: name }), el("dd", { text: value }));
  }

  function showFeedback(feedback) {
    const tbody = document.querySelector("#feedback tbody");
    tbody.replaceChildren();
    const entries = feedback && typeof feedback === "object" ? Object.entries(feedback) : [];
    for (const [k, v] of entries) tbody.append(el("tr", {}, el("th", { text: k }), el("td", { text: v })));
    document.getElementById("no-feedback").hidden = entries.length > 0;
    const p = progressOf(feedback);
    document.getElementById("progress-line").hidden = p === null;
    if (p !== null) {
      document.getElementById("progress").value = p;
      document.getElementById("pct").textContent = Math.round(p) + "%";
    }
  }

  // A task run again (--retries) keeps its id: each ended attempt is a history row of it.
  function showAttempts(attempts, ended) {
    const part = document.getElementById("attempts-part");
    part.hidden = attempts.length === 0 || (attempts.length === 1 && ended);
    const tbody = document.querySelector("#attempts tbody");
    tbody.replaceChildren();
    for (const a of attempts) {
      const o = outcome(a);
      tbody.append(el("tr", { "data-historyid": a.historyid },
        el("td", { text: String(a.attempt) }),
        el("td", {}, el("span", { class: "outcome " + (o.ok ? "ok" : "fail"), text: o.text })),
        el("td", { text: when(a.starttime) }),
        el("td", { text: when(a.endtime) }),
        el("td", { text: duration(a.duration) }),
        el("td", { text: a.hook || "" })));
    }
  }

  function showDetail(d) {
    detail = d;
    finished = d.finished;
    document.title = "task " + taskid + " " + (d.name || "") + " · taskwatcher";
    document.getElementById("name").textContent = d.name || "";
    document.getElementById("status").replaceWith(Object.assign(status(d.status), { id: "status" }));
    const dl = document.getElementById("facts");
    dl.replaceChildren();
    fact(dl, "command", commandText(d.command));
    fact(dl, "info", [d.info1, d.info2, d.info3].filter(Boolean).join(" · "));
    fact(dl, "host", d.host);
    fact(dl, "pid", d.pid);
    fact(dl, "reserved", when(d.reservetime));
    fact(dl, "started", when(d.starttime));
    fact(dl, "ended", when(d.endtime));
    fact(dl, "duration", duration(d.duration));
    fact(dl, "heartbeat", d.timer === null || d.timer === undefined ? "" : duration(d.timer) + " ago");
    fact(dl, "timeout", d.timeout ? duration(d.timeout) : "");
    fact(dl, "line", lineText(d));
    if (d.finished) {
      fact(dl, "exit code", d.exitcode === null ? "none" : String(d.exitcode));
      fact(dl, "signal", d.termsignal);
      fact(dl, "reason", d.termerror);
    }
    fact(dl, "log", d.logfile);
    showFeedback(d.feedback);
    showAttempts(d.attempts || [], d.finished);
    const kill = document.getElementById("kill");
    if (kill) kill.hidden = d.finished || readOnly;
  }

  async function load() {
    try {
      showDetail(await (await api("/tasks/" + taskid)).json());
    } catch (e) {
      say(e.message);
    }
  }

  async function readLog() {
    if (!detail || !detail.logfile) return;
    try {
      for (;;) {
        const r = await api("/tasks/" + taskid + "/log?offset=" + offset);
        const next = Number(r.headers.get("X-Next-Offset"));
        const bytes = new Uint8Array(await r.arrayBuffer());
        if (next < offset) { // the log rotated: read what is kept from its start
          offset = 0; decoder = new TextDecoder(); logBox.textContent = "";
          continue;
        }
        offset = next;
        if (!bytes.length) break;
        const atBottom = logBox.scrollTop + logBox.clientHeight >= logBox.scrollHeight - 4;
        let text = logBox.textContent + decoder.decode(bytes, { stream: true });
        if (text.length > KEEP) text = text.slice(text.length - KEEP);
        logBox.textContent = text;
        if (atBottom) logBox.scrollTop = logBox.scrollHeight;
      }
      document.getElementById("log-state").textContent = finished ? "" : "following";
    } catch (e) {
      document.getElementById("log-state").textContent = e.status === 404 ? "(none)" : e.message;
    }
  }

  async function followLog() {
    await readLog();
    if (!finished) setTimeout(followLog, 1000);
    else document.getElementById("log-state").textContent = "";
  }

  const kill = document.getElementById("kill");
  if (kill) {
    kill.addEventListener("click", async () => {
      const name = detail && detail.name ? " (" + detail.name + ")" : "";
      if (!window.confirm("Kill task " + taskid + name + "?")) return;
      kill.disabled = true;
      say("Stopping…");
      try {
        const done = await (await api("/tasks/" + taskid + "/kill", { method: "POST" })).json();
        say(done.done);
      } catch (e) {
        say(e.message);
      }
      kill.disabled = false;
      await load();
      await readLog();
    });
  }

  live({
    task(data) {
      if (data.taskid !== taskid || !detail || detail.finished) return;
      // The event holds the task's --list entry and latest feedback: the facts they share change.
      const t = data.task, merged = Object.assign({}, detail);
      for (const key of ["status", "pid", "starttime", "duration", "lastupdate", "timer", "timeout"]) {
        merged[key] = t[key];
      }
      if (data.latest) merged.feedback = data.latest;
      showDetail(merged);
    },
    ended(data) {
      if (data.taskid === taskid) load().then(readLog);
    },
  });

  load().then(followLog);
})();
