// Shared by every page: building elements (task data only ever as text), the API, formats,
// and the live event stream. No framework, no build step.
"use strict";

const TW = (() => {
  // An element with attributes and children; strings become text nodes, never HTML.
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else e.setAttribute(k, String(v));
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c);
    return e;
  }

  async function api(path, options) {
    const r = await fetch("/api/v1" + path, Object.assign({ credentials: "same-origin" }, options || {}));
    if (r.status === 401) {
      location.href = "/login";
      throw new Error("not logged in");
    }
    if (!r.ok) {
      let message = r.status + " " + r.statusText;
      try { message = (await r.json()).error || message; } catch (e) { /* not JSON */ }
      const err = new Error(message);
      err.status = r.status;
      throw err;
    }
    return r;
  }

  function pad(n) { return String(n).padStart(2, "0"); }

  function duration(seconds) {
    if (seconds === null || seconds === undefined || isNaN(seconds)) return "";
    let s = Math.max(0, Math.floor(seconds));
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return d + "d " + pad(h) + "h";
    if (h) return h + "h " + pad(m) + "m";
    if (m) return m + "m " + pad(s) + "s";
    return s + "s";
  }

  function when(unix) {
    if (!unix) return "";
    const t = new Date(unix * 1000), now = new Date();
    const time = pad(t.getHours()) + ":" + pad(t.getMinutes()) + ":" + pad(t.getSeconds());
    if (t.toDateString() === now.toDateString()) return time;
    return t.getFullYear() + "-" + pad(t.getMonth() + 1) + "-" + pad(t.getDate()) + " " + time.slice(0, 5);
  }

  function status(text) {
    return el("span", { class: "status s-" + String(text || "").toLowerCase(), text: text || "" });
  }

  // The "progress" feedback key as a number from 0 to 100, or null.
  function progressOf(feedback) {
    if (!feedback || typeof feedback !== "object" || !("progress" in feedback)) return null;
    const p = parseFloat(feedback.progress);
    return isNaN(p) ? null : Math.min(100, Math.max(0, p));
  }

  function feedbackText(feedback, skipProgress) {
    if (!feedback || typeof feedback !== "object") return feedback ? String(feedback) : "";
    return Object.entries(feedback)
      .filter(([k]) => !(skipProgress && k === "progress"))
      .map(([k, v]) => k + "=" + v).join(", ");
  }

  function outcome(entry) {
    if (entry.termsignal) return { text: entry.termerror || entry.termsignal, ok: false };
    if (entry.exitcode === 0) return { text: "exit 0", ok: true };
    return { text: entry.termerror || ("exit " + entry.exitcode), ok: false };
  }

  // A command (a list of words) as a shell would read it.
  function commandText(words) {
    if (!Array.isArray(words)) return words ? String(words) : "";
    return words.map((w) => (/^[\w@%+=:,./-]+$/.test(w) ? w : "'" + String(w).replace(/'/g, "'\\''") + "'")).join(" ");
  }

  // Where a task stands in the line, and which attempt it is: "group g (2 slots), place 3 ·
  // after #4, #5 · attempt 2", empty for a task of no group, no dependency, a first attempt.
  function lineText(t) {
    const parts = [];
    if (t.group) {
      let g = "group " + t.group + (t.slots ? " (" + t.slots + (t.slots === 1 ? " slot)" : " slots)") : "");
      if (t.place) g += ", place " + t.place;
      parts.push(g);
    }
    if (Array.isArray(t.after) && t.after.length) parts.push("after " + t.after.map((a) => "#" + a).join(", "));
    if (t.attempt && t.attempt > 1) parts.push("attempt " + t.attempt);
    return parts.join(" · ");
  }

  // Finished tasks (the API's history object), newest first, as table rows.
  function historyRows(tbody, entries) {
    tbody.replaceChildren();
    tbody.closest(".scroll").hidden = entries.length === 0;
    for (const [hid, e] of entries) {
      const o = outcome(e);
      tbody.append(el("tr", { "data-historyid": hid },
        el("td", {}, el("a", { href: "/tasks/" + encodeURIComponent(e.taskid), text: "#" + e.taskid })),
        el("td", { class: "name", text: e.taskname || "" }),
        el("td", {}, el("span", { class: "outcome " + (o.ok ? "ok" : "fail"), text: o.text })),
        el("td", { text: when(e.endtime) }),
        el("td", { text: duration(e.duration) }),
        el("td", { class: "fb", text: feedbackText(e.feedback, false) })));
    }
  }

  function newestFirst(history) {
    return Object.entries(history).sort((a, b) => Number(b[0]) - Number(a[0]));
  }

  // The live stream of task changes: handlers.task(data), handlers.ended(data), handlers.reset().
  function live(handlers) {
    const dot = document.getElementById("live");
    if (dot) dot.hidden = false;
    const source = new EventSource("/api/v1/events");
    source.addEventListener("open", () => dot && dot.classList.add("on"));
    source.addEventListener("error", () => dot && dot.classList.remove("on"));
    for (const name of ["task", "ended", "reset"]) {
      source.addEventListener(name, (ev) => handlers[name] && handlers[name](JSON.parse(ev.data || "{}")));
    }
    return source;
  }

  return { el, api, duration, when, status, progressOf, feedbackText, outcome, commandText, historyRows,
           newestFirst, live, lineText };
})();
