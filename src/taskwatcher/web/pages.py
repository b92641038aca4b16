"""The pages' HTML: shells that the scripts in static/ fill from the API.

No task data is put in the HTML here (the scripts set it with ``textContent``); what the
server does put in (a task id, a message) goes through :func:`html.escape`. No inline
script or style: the Content-Security-Policy allows the package's own files only.
"""

from __future__ import annotations

from html import escape


def _page(title: str, main: str, script: str | None, *, read_only: bool, login: bool, attrs: str = "") -> str:
    badge = '<span class="badge">read-only</span>' if read_only else ""
    logout = (
        '<form method="post" action="/logout" class="logout"><button type="submit">Log out</button></form>'
        if login
        else ""
    )
    scripts = '<script src="/static/common.js" defer></script>'
    if script:
        scripts += f'<script src="/static/{escape(script)}" defer></script>'
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · taskwatcher</title>
<link rel="stylesheet" href="/static/style.css">
<link rel="icon" href="/static/icon.svg" type="image/svg+xml">
{scripts}
</head>
<body data-read-only="{int(read_only)}"{attrs}>
<header class="top">
  <a class="brand" href="/">taskwatcher</a>
  <nav><a href="/">Tasks</a><a href="/history">History</a><a href="/hosts">Hosts</a></nav>
  {badge}<span id="live" class="live" title="live updates" hidden>● live</span>{logout}
</header>
<main>
{main}
</main>
</body>
</html>
"""


def dashboard(*, read_only: bool, login: bool) -> str:
    main = """<section>
  <h1>Tasks <span id="count" class="count"></span></h1>
  <p id="no-tasks" class="empty" hidden>No task is running, queued or reserved.</p>
  <div id="tasks" class="cards"></div>
</section>
<section>
  <h2>Recently finished <a class="more" href="/history">all history →</a></h2>
  <p id="no-history" class="empty" hidden>Nothing has finished yet.</p>
  <div class="scroll" hidden><table id="recent" class="history"><thead><tr>
    <th>task</th><th>name</th><th>outcome</th><th>ended</th><th>took</th><th>feedback</th>
  </tr></thead><tbody></tbody></table></div>
</section>"""
    return _page("Tasks", main, "dashboard.js", read_only=read_only, login=login)


def task(taskid: int, *, read_only: bool, login: bool) -> str:
    kill = "" if read_only else '<button id="kill" class="danger" type="button" hidden>Kill</button>'
    main = f"""<section>
  <h1><span class="muted">task {taskid}</span> <span id="name"></span>
    <span id="status" class="status"></span></h1>
  <p id="message" class="message" hidden></p>
  <div class="actions">{kill}</div>
  <div id="progress-line" class="bar" hidden><progress id="progress" max="100"></progress>
    <span id="pct" class="pct"></span></div>
  <dl id="facts" class="facts"></dl>
  <h2>Feedback</h2>
  <p id="no-feedback" class="empty" hidden>No feedback.</p>
  <table id="feedback" class="kv"><tbody></tbody></table>
  <div id="attempts-part" hidden>
    <h2>Attempts</h2>
    <div class="scroll"><table id="attempts" class="history"><thead><tr>
      <th>attempt</th><th>outcome</th><th>started</th><th>ended</th><th>took</th><th>hook</th>
    </tr></thead><tbody></tbody></table></div>
  </div>
  <h2>Log <span id="log-state" class="muted"></span></h2>
  <pre id="log" class="log"></pre>
</section>"""
    return _page(f"task {taskid}", main, "task.js", read_only=read_only, login=login,
                 attrs=f' data-taskid="{taskid}"')  # fmt: skip


def history(*, read_only: bool, login: bool) -> str:
    main = """<section>
  <h1>History</h1>
  <form id="filters" class="filters" method="get" action="/history">
    <label>name <input name="name" id="f-name" autocomplete="off"></label>
    <label>ended since <input name="since" id="f-since" placeholder="2h, 7d, 2026-11-28"></label>
    <label>per page <input name="last" id="f-last" type="number" min="1" value="50"></label>
    <button type="submit">Filter</button>
  </form>
  <p id="error" class="message" hidden></p>
  <p id="no-history" class="empty" hidden>No finished task matches.</p>
  <div class="scroll" hidden><table id="history" class="history"><thead><tr>
    <th>task</th><th>name</th><th>outcome</th><th>ended</th><th>took</th><th>feedback</th>
  </tr></thead><tbody></tbody></table></div>
  <nav class="pager"><a id="newer" href="#" hidden>← newest</a><a id="older" href="#" hidden>older →</a></nav>
</section>"""
    return _page("History", main, "history.js", read_only=read_only, login=login)


def hosts(*, read_only: bool, login: bool) -> str:
    main = """<section>
  <h1>Hosts <span id="count" class="count"></span></h1>
  <p id="where" class="muted"></p>
  <p id="error" class="message" hidden></p>
  <div id="hosts" class="cards hosts"></div>
</section>"""
    return _page("Hosts", main, "hosts.js", read_only=read_only, login=login)


def login(message: str = "") -> str:
    said = f'<p class="message">{escape(message)}</p>' if message else ""
    main = f"""<section class="login">
  <h1>Log in</h1>
  {said}
  <form method="post" action="/login">
    <label>Token
      <input name="token" id="token" type="password" autocomplete="current-password" autofocus></label>
    <button type="submit">Log in</button>
  </form>
  <p class="muted">The token is in the server's token file (<code>taskwatcher serve --make-token</code>).</p>
</section>"""
    return _page("Log in", main, None, read_only=False, login=False)


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
