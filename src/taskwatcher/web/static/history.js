// History with filters (name, ended since) and pages (older: the ids below this page's lowest).
"use strict";

(() => {
  const { api, historyRows, newestFirst } = TW;
  const params = new URLSearchParams(location.search);
  const last = Math.max(1, parseInt(params.get("last") || "50", 10) || 50);
  for (const key of ["name", "since"]) document.getElementById("f-" + key).value = params.get(key) || "";
  document.getElementById("f-last").value = String(last);

  function link(id, before) {
    const p = new URLSearchParams();
    for (const key of ["name", "since"]) if (params.get(key)) p.set(key, params.get(key));
    p.set("last", String(last));
    if (before) p.set("before", String(before));
    const a = document.getElementById(id);
    a.href = "/history?" + p.toString();
    a.hidden = false;
  }

  async function load() {
    const q = new URLSearchParams();
    for (const key of ["name", "since", "before"]) if (params.get(key)) q.set(key, params.get(key));
    q.set("last", String(last));
    try {
      const rows = newestFirst(await (await api("/history?" + q.toString())).json());
      historyRows(document.querySelector("#history tbody"), rows);
      document.getElementById("no-history").hidden = rows.length > 0;
      if (rows.length === last) link("older", rows[rows.length - 1][0]);
      if (params.get("before")) link("newer", null);
    } catch (e) {
      const m = document.getElementById("error");
      m.textContent = e.message;
      m.hidden = false;
    }
  }
  load();
})();
