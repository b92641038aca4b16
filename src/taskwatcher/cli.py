"""The command line: parse arguments, call the library, format its answers, map errors to exit codes.

Imports stay light at module level: ``control --list --json`` is polled by web
back-ends, so its start-up time is what users feel. The library modules are
imported inside the command that needs them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from . import __version__
from .errors import NotAllStopped, TaskwatcherError, UsageError

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any, NoReturn

EXIT_USAGE = 2
EXIT_LAUNCH_FAILED = 125  # spawn.EXIT_CANNOT_START, without importing the launcher
MAX_TASK_ID = 2**63 - 1  # SQLite's largest integer
NEWEST = 0  # the value of --log, --wait, --feedback, --show given without an id: the newest task
DURATION_HELP = "90, 0.5, 500ms, 90s, 30m, 2h, 1d"


def _columns() -> int:
    """The terminal's width, as shutil.get_terminal_size gives it, without importing shutil."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


class _KnownWidth:
    # argparse builds a formatter for every option it adds (to check its metavar), and
    # the formatter imports shutil (with bz2 and lzma: 5 ms) to ask the terminal's width.
    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24, width=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(
            prog, indent_increment, max_help_position, _columns() - 2 if width is None else width
        )  # type: ignore[call-arg]


class Formatter(_KnownWidth, argparse.HelpFormatter):
    pass


class ExamplesFormatter(_KnownWidth, argparse.RawDescriptionHelpFormatter):
    """Keeps the line breaks of a description and of the examples in an epilog."""


class Parser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line and a chosen exit code."""

    usage_exit = EXIT_USAGE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # "--lis" for "--list" would change meaning the day another option starts alike.
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", Formatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        from .display import escape_control  # the word that was wrong may hold any byte

        sys.stderr.write(f"{self.prog}: error: {escape_control(message)}\n")
        sys.exit(self.usage_exit)


def duration(text: str) -> float:
    """Seconds, or a number with a unit (``500ms``, ``30m``...): config.parse_duration."""
    from .config import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def whole(text: str) -> int:
    """0 or a positive whole number."""
    return 0 if text.strip() == "0" else count(text)


def count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_TASK_ID:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def size(text: str) -> int:
    """A number of bytes, with an optional K, M or G (powers of 1024)."""
    from .config import parse_size

    try:
        return parse_size(text)
    except (ValueError, OverflowError) as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def task_ids(text: str) -> list[int]:
    """``3,5,8``: task ids."""
    return [task_id(part.strip()) for part in text.split(",")]


def factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"a factor from 1 to 1000, not {text!r}")
    return value


def kinds(text: str) -> list[str]:
    """``failure,timeout``: kinds of end (checked by the launcher)."""
    return [part.strip() for part in text.split(",") if part.strip()]


def task_id(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a task id is an integer, not {text!r}") from None
    if not 1 <= value <= MAX_TASK_ID:
        raise argparse.ArgumentTypeError(f"a task id is an integer from 1 to {MAX_TASK_ID}, not {text!r}")
    return value


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--db",
        metavar="PATH",
        help="the database: an SQLite file, or a postgresql:// URL (default: $TASKWATCHER_DB, else the"
        " configuration file's, else $XDG_STATE_HOME/taskwatcher/taskwatcher.db)",
    )
    p.add_argument("--debug", "-d", action="store_true", help="log what happens, on stderr")


def _task_id_or_newest(group: argparse._ActionsContainer, option: str, help: str) -> None:
    group.add_argument(
        option, type=task_id, nargs="?", const=NEWEST, metavar="ID", help=f"{help} (no ID: the newest task)"
    )


def _task_fields(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", "--taskname", dest="name", metavar="NAME", help="the task's name")
    for i in (1, 2, 3):
        p.add_argument(f"--info{i}", metavar="TEXT", help="free text kept with the task")
    p.add_argument(
        "--unique", action="store_true", help="refuse while a task of this name is reserved or running"
    )


LAUNCH_EXAMPLES = """The command starts at the first word that is not an option of launch (as with
nice or timeout); everything after it is the command's. `--` is needed only for a
command whose name starts with `-`.

examples:
  taskwatcher launch make test
  taskwatcher launch --timeout 1h --name nightly ./run.sh --full
  id=$(taskwatcher control --reserve --name build --unique)
  taskwatcher launch --taskid "$id" --feedpath /tmp --timeout 30s ./build.sh --feedback {feedback}
  taskwatcher launch --detach --feedpath /tmp python3 job.py
  taskwatcher launch -- -weird-name
"""

CONTROL_EXAMPLES = """--feedback, --log, --wait and --show without an ID mean the newest task (the
highest id, running or finished); --kill always needs an ID.

examples:
  taskwatcher control --list --json
  taskwatcher control --reserve --name backup --unique
  taskwatcher control --feedback 7
  taskwatcher control --show              # everything about the newest task
  taskwatcher control --history --json
  taskwatcher control --kill 7
  taskwatcher control --wait 7 --timeout 10m; echo "task 7 exited $?"
  taskwatcher control --log --follow      # the newest task's output, as it comes
  taskwatcher control --watch
  taskwatcher control --prune --keep 1000 --max-age 90d
"""


def build_parser(tool: str | None = None) -> Parser:
    """The whole parser; with ``tool``, only that subcommand's options are built.

    Building argparse actions costs milliseconds that ``control --list --json``,
    polled by web pages, should not pay for ``launch``'s options and vice versa.
    """
    top = Parser(prog="taskwatcher", description="Run commands as supervised tasks.")
    top.add_argument("--version", action="version", version=f"taskwatcher {__version__}")
    sub = top.add_subparsers(
        dest="tool", metavar="{launch,control,parse,feed,completion,serve}", parser_class=Parser
    )
    for name, (add_options, kwargs) in _TOOLS.items():
        p = sub.add_parser(name, **kwargs)
        if tool in (None, name):
            add_options(p)
    return top


def _launch_options(launch: Parser) -> None:
    launch.usage_exit = EXIT_LAUNCH_FAILED
    _common(launch)
    launch.add_argument("--taskid", type=task_id, metavar="ID", help="a reserved task id")
    _task_fields(launch)
    launch.add_argument(
        "--feedpath", metavar="DIR", help="folder of the feedback file DIR/feedback_ID.log (the heartbeat)"
    )
    launch.add_argument(
        "--timeout",
        type=duration,
        metavar="DURATION",
        help=f"with --feedpath: longest silence; without: longest run time ({DURATION_HELP})",
    )
    launch.add_argument(
        "--grace",
        type=duration,
        default=None,
        metavar="DURATION",
        help="wait this long after SIGTERM before SIGKILL (default 5s)",
    )
    launch.add_argument(
        "--lease",
        type=duration,
        default=None,
        metavar="DURATION",
        help="on a PostgreSQL database: the launcher's lease, renewed every sixth of it (default 60s)",
    )
    launch.add_argument(
        "--detach",
        action="store_true",
        help="return once the task runs, printing its id; output goes to a log",
    )
    launch.add_argument(
        "--log",
        metavar="FILE",
        help="the task's output log (default: beside the database, <db>-logs/task_ID.log)",
    )
    launch.add_argument(
        "--log-max",
        type=size,
        metavar="BYTES",
        help="the log keeps the last BYTES of output (512K, 8M, 1G...; default 8M, or the config file's)",
    )
    launch.add_argument(
        "--no-log",
        action="store_true",
        help="foreground only: no log; the command writes to this terminal directly",
    )
    line = launch.add_argument_group("queues, dependencies, retries, hooks")
    line.add_argument("--group", metavar="G", help="at most --slots of G run at once; others wait in line")
    line.add_argument("--slots", type=count, metavar="N", help="with --group: how many at once (default 1)")
    line.add_argument(
        "--after", type=task_ids, metavar="ID,...",
        help="start once these ended with exit 0 (if one did not, this never runs: exit 125)",
    )  # fmt: skip
    line.add_argument("--after-any", type=task_ids, metavar="ID,...", help="start once these ended, however")
    line.add_argument(
        "--retries", type=whole, metavar="N",
        help="run again, up to N more times, an end of a --retry-on kind (same task id)",
    )  # fmt: skip
    line.add_argument("--retry-delay", type=duration, metavar="DURATION", help="wait before a retry (1s)")
    line.add_argument("--retry-backoff", type=factor, metavar="F", help="each retry waits F times longer (1)")
    line.add_argument(
        "--retry-on", type=kinds, metavar="KINDS",
        help="the ends retried: failure, timeout, lost, comma-separated (default all; never a --kill)",
    )  # fmt: skip
    line.add_argument(
        "--on-end", metavar="SHELL_COMMAND",
        help="run this after each end of the task (the end in $TASKWATCHER_EXITCODE...)",
    )  # fmt: skip
    # What taskwatcher itself starts: the launcher of a queued task, the runner of finish hooks.
    launch.add_argument("--queued", type=task_id, help=argparse.SUPPRESS)
    launch.add_argument("--run-hooks", type=count, help=argparse.SUPPRESS)
    launch.add_argument("--record-kept-ends", metavar="FOLDER", help=argparse.SUPPRESS)


def _control_options(control: Parser) -> None:
    _common(control)
    cmds = control.add_mutually_exclusive_group(required=True)
    cmds.add_argument("--initialize", action="store_true", help="recreate the database (all is lost)")
    cmds.add_argument(
        "--update",
        action="store_true",
        help="refresh durations and statuses, expire reservations, archive lost tasks",
    )
    cmds.add_argument("--list", action="store_true", help="running and reserved tasks")
    cmds.add_argument("--reserve", action="store_true", help="print a new task id, held for a launch")
    _task_id_or_newest(cmds, "--feedback", "a task's latest feedback, as JSON")
    cmds.add_argument("--history", action="store_true", help="finished tasks, oldest first")
    cmds.add_argument("--clear", action="store_true", help="delete the history")
    cmds.add_argument("--kill", type=task_id, metavar="ID", help="stop a task, or cancel a reservation")
    cmds.add_argument("--killall", metavar="NAME", help="stop every task of that name")
    _task_id_or_newest(cmds, "--wait", "wait for the task to end; exit with its exit status")
    _task_id_or_newest(cmds, "--log", "print the task's output log")
    _task_id_or_newest(cmds, "--show", "everything known about one task, running or finished")
    cmds.add_argument("--watch", action="store_true", help="a live view of the tasks (q or Ctrl-C leaves)")
    cmds.add_argument("--prune", action="store_true", help="delete old history (with --keep, --max-age)")
    control.add_argument("--follow", "-f", action="store_true", help="with --log: go on until the task ends")
    control.add_argument(
        "--keep", type=whole, metavar="N", help="with --prune: keep the newest N finished tasks"
    )
    control.add_argument(
        "--max-age",
        metavar="AGE",
        help="with --prune: delete finished tasks older than AGE (90d, 12h, 2w...)",
    )
    control.add_argument("--json", action="store_true", help="with --list, --history, --show: JSON output")
    control.add_argument("--host", metavar="NAME", help="with --list: only the tasks running on host NAME")
    control.add_argument("--last", type=count, metavar="N", help="with --history: only the last N")
    control.add_argument(
        "--since",
        metavar="WHEN",
        help="with --history: ended since (2026-11-28, 2026-11-28T14:30, 2h, 7d...)",
    )
    control.add_argument(
        "--timeout",
        type=duration,
        metavar="DURATION",
        help=f"with --wait: give up after this long, exit 124 ({DURATION_HELP})",
    )
    control.add_argument(
        "--force", action="store_true", help="with --initialize: stop running tasks and go ahead"
    )
    _task_fields(control)
    control.add_argument(
        "--ttl",
        type=duration,
        default=None,
        metavar="DURATION",
        help="with --reserve: how long the reservation is held (default 60s)",
    )


def _parse_options(parse: Parser) -> None:
    parse.add_argument("--feedback", required=True, metavar="FILE", help="the feedback file")
    parse.add_argument("--debug", "-d", action="store_true", help="say which lines are ignored and why")


FEED_EXAMPLES = """examples (inside a task launched with --feedpath):
  taskwatcher feed progress 42        # [progress]42
  taskwatcher feed --clear phase      # [phase]
  taskwatcher feed --clear-all        # []
  taskwatcher feed --heartbeat        # resets the timeout, changes no data
"""


def _feed_options(feed: Parser) -> None:
    what = feed.add_mutually_exclusive_group()
    what.add_argument("--clear", metavar="KEY", help="remove KEY")
    what.add_argument("--clear-all", action="store_true", help="remove every key")
    what.add_argument("--heartbeat", action="store_true", help="only say the task is alive")
    feed.add_argument("key", nargs="?", help="the key to set")
    feed.add_argument("value", nargs="?", help="its value (one line)")
    feed.add_argument("--debug", "-d", action="store_true", help="log what happens, on stderr")


SERVE_EXAMPLES = """examples:
  taskwatcher serve                       # http://127.0.0.1:8470/ on this machine only
  taskwatcher serve --read-only --bind 127.0.0.1:9000
  taskwatcher serve --make-token          # a token for the API and the login page, then:
  taskwatcher serve --bind 0.0.0.0:8470   # any other address needs a token
  curl -H "Authorization: Bearer $(cat ~/.local/state/taskwatcher/web-token)" http://HOST:8470/api/v1/tasks
"""


def _serve_options(serve: Parser) -> None:
    _common(serve)
    serve.add_argument(
        "--bind",
        default="127.0.0.1:8470",
        metavar="HOST:PORT",
        help="where to listen (default 127.0.0.1:8470)",
    )
    serve.add_argument("--read-only", action="store_true", help="refuse every change (kill): 403")
    serve.add_argument(
        "--token-file",
        metavar="FILE",
        help="the token (a 0600 file; default: web-token in taskwatcher's state folder, if it exists)",
    )
    serve.add_argument(
        "--make-token", action="store_true", help="write a new token to the token file, print its path, exit"
    )
    # Seconds between two keep-alive comments on the event stream (tests make it short).
    serve.add_argument("--keepalive", type=duration, default=15.0, help=argparse.SUPPRESS)


def _completion_options(completion: Parser) -> None:
    completion.add_argument("shell", nargs="?", choices=("bash", "zsh"), help="the shell to complete for")
    # What the completion script itself calls to offer task ids (after --log, --wait...).
    completion.add_argument("--task-ids", action="store_true", help=argparse.SUPPRESS)
    completion.add_argument("--db", help=argparse.SUPPRESS)


_TOOLS = {
    "launch": (
        _launch_options,
        dict(
            help="run a command as a supervised task",
            description="Run CMD as a supervised task. Exit status: the command's own; 124 on "
            "its timeout; 125 if it could not be started; 126 not executable; 127 not found; "
            "128+N if it died of signal N.",
            epilog=LAUNCH_EXAMPLES,
            formatter_class=ExamplesFormatter,
            usage="taskwatcher launch [options] [--] CMD [ARG...]",
        ),
    ),
    "control": (
        _control_options,
        dict(
            help="list, reserve, kill tasks; read feedback and history",
            epilog=CONTROL_EXAMPLES,
            formatter_class=ExamplesFormatter,
        ),
    ),
    "parse": (
        _parse_options,
        dict(
            help="print a feedback file as JSON",
            epilog='example:\n  taskwatcher parse --feedback /tmp/run/feedback_7.log   # {"progress": "100"}',
            formatter_class=ExamplesFormatter,
        ),
    ),
    "completion": (
        _completion_options,
        dict(
            help="print a shell completion script",
            description='Print a completion script: eval "$(taskwatcher completion bash)" in ~/.bashrc, '
            "or the same with zsh in ~/.zshrc.",
        ),
    ),
    "serve": (
        _serve_options,
        dict(
            help="a live dashboard and an HTTP JSON API (needs taskwatcher[web])",
            epilog=SERVE_EXAMPLES,
            formatter_class=ExamplesFormatter,
        ),
    ),
    "feed": (
        _feed_options,
        dict(
            help="append a line to this task's feedback file ($TASKWATCHER_FEEDBACK)",
            epilog=FEED_EXAMPLES,
            formatter_class=ExamplesFormatter,
        ),
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    args_in = list(sys.argv[1:] if argv is None else argv)
    # argparse asks gettext for a translation of every string it builds, and gettext
    # searches the locale folders anew on each call: 9 ms of a 20 ms command. Our
    # messages exist in English only, so the CLI process skips that search.
    argparse._ = str  # type: ignore[attr-defined]
    tool = args_in[0] if args_in[:1] and args_in[0] in _TOOLS else None
    parser = build_parser(tool)
    if tool is None:
        _check_before_tool(parser, args_in)
    command: list[str] = []
    if tool is not None:
        sub = _subparser(parser, tool)
        if tool == "launch":
            parser.usage_exit = EXIT_LAUNCH_FAILED  # launch keeps 1-123 for the command's own status
            options, command = split_launch_words(sub, args_in[1:])
            args_in = [tool, *options]
        else:
            args_in = [tool, *check_options(sub, args_in[1:])]
    args, extra = parser.parse_known_args(args_in)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.tool is None:
        parser.print_usage(sys.stderr)
        return EXIT_USAGE
    args.debug = getattr(args, "debug", False)  # completion has no --debug
    if args.debug:
        import logging

        logging.basicConfig(
            level=logging.DEBUG, stream=sys.stderr, format="taskwatcher[%(process)d] %(name)s: %(message)s"
        )
    try:
        if getattr(args, "db", None) == "":  # an unset variable in a script: never the default db
            raise UsageError("--db needs a path")
        if args.tool == "launch":
            return run_launch(args, command)
        if args.tool == "control":
            return run_control(args)
        if args.tool == "feed":
            return run_feed(args)
        if args.tool == "completion":
            return run_completion(args)
        if args.tool == "serve":
            return run_serve(args)
        return run_parse(args)
    except TaskwatcherError as e:
        # launch keeps 0-123 for the command's own status: its own failures are 125 and up.
        code = EXIT_LAUNCH_FAILED if args.tool == "launch" and e.exit_code < 124 else e.exit_code
        return _fail(str(e), code, args.debug)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        sys.stderr.close()  # the reader left (| head): not an error worth a message
        return 0
    except Exception as e:
        code = EXIT_LAUNCH_FAILED if args.tool == "launch" else 1
        return _fail(f"internal error: {type(e).__name__}: {e}", code, args.debug)


def _subparser(parser: argparse.ArgumentParser, tool: str) -> Parser:
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return subparsers.choices[tool]  # type: ignore[no-any-return]


def split_launch_words(launch: Parser, words: list[str]) -> tuple[list[str], list[str]]:
    """launch's own options, and the command: from the first word that is not an option
    of launch (as ``nice`` and ``timeout`` do), or from after ``--``.

    An option that takes a value takes the next word (``--name x cmd``); an unknown
    option is an error naming the nearest known one.
    """
    options: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return options, words[i + 1 :]
        if not _looks_like_option(launch, word):
            return options, words[i:]
        taken = _value_words(launch, word, words[i + 1 : i + 2])
        options += _with_value(word, words[i + 1 : i + 1 + taken])
        i += 1 + taken
    return options, []


def check_options(sub: Parser, words: list[str]) -> list[str]:
    """Refuse an unknown option before argparse does, naming the nearest known one; the
    words, an option's value joined to it where argparse would take it for an option."""
    checked: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":
            return checked + words[i:]
        taken = _value_words(sub, word, words[i + 1 : i + 2]) if _looks_like_option(sub, word) else 0
        checked += _with_value(word, words[i + 1 : i + 1 + taken])
        i += 1 + taken
    return checked


def _with_value(option: str, value: list[str]) -> list[str]:
    """An option and the word it takes as its value; ``--name -x`` as ``--name=-x`` (and
    ``-n -x`` as ``-n-x``), since argparse would refuse a value that starts with ``-``,
    where an option that takes a value takes the next word, whatever it is."""
    if not value or not value[0].startswith("-"):
        return [option, *value]
    return [f"{option}={value[0]}" if option.startswith("--") else option + value[0]]


def _looks_like_option(sub: Parser, word: str) -> bool:
    """As argparse tells options from other words: not ``-``, a negative number or words with a space
    (but ``--on-end='echo done'``, a known option with its value joined, is an option)."""
    if word.startswith("--") and word.split("=", 1)[0] in sub._option_string_actions and "=" in word:
        return True
    if not word.startswith("-") or word == "-" or " " in word:
        return False
    return not sub._negative_number_matcher.match(word)


def _value_words(sub: Parser, word: str, following: list[str]) -> int:
    """How many of the next words are the value of option ``word`` (0 or 1); unknown: an error."""
    name, has_value = word.split("=", 1)[0], "=" in word
    action = sub._option_string_actions.get(name)
    if action is None:
        near = _nearest(name, sub._option_string_actions)
        if not near and sub.usage_exit == EXIT_LAUNCH_FAILED:
            near = ": a command whose name starts with - goes after --"
        sub.error(f"unknown option {name}{near}")
    if has_value or action.nargs == 0:
        return 0
    if action.nargs == "?":  # an optional id: the next word only if it is not an option
        return int(bool(following) and not following[0].startswith("-"))
    return 1


def _nearest(word: str, candidates: Sequence[str]) -> str:
    """`` (did you mean --list?)`` for the nearest long option (or subcommand), else ""."""
    import difflib

    names = {c.lstrip("-"): c for c in candidates if c.startswith("--") or not c.startswith("-")}
    close = difflib.get_close_matches(word.lstrip("-"), list(names), n=1, cutoff=0.6)
    return f" (did you mean {names[close[0]]}?)" if close else ""


def _check_before_tool(parser: Parser, words: list[str]) -> None:
    """Options given before the subcommand (``taskwatcher -d control --list``) are explained:
    every option but --help and --version goes after it. A first word that is no subcommand
    is named as the mistake (``taskwatcher contrl --list``), not the option after it."""
    if words and not words[0].startswith("-"):
        parser.error(f"unknown command {words[0]}{_nearest(words[0], list(_TOOLS))}")
    for i, word in enumerate(words):
        if not word.startswith("-") or word in ("-h", "--help", "--version"):
            continue
        tool = next((w for w in words[i + 1 :] if w in _TOOLS), None)
        if tool is not None:
            parser.usage_exit = EXIT_LAUNCH_FAILED if tool == "launch" else EXIT_USAGE
            name = word.split("=", 1)[0]
            parser.error(f"{name} goes after the subcommand: taskwatcher {tool} {name} ...")
        name = word.split("=", 1)[0]
        parser.error(f"unknown option {name}{_nearest(name, [*parser._option_string_actions, *_TOOLS])}")


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        import logging

        logging.getLogger("taskwatcher").exception("failed")
    from .display import escape_control  # a name or a path in the message may hold any byte

    sys.stderr.write(f"taskwatcher: {escape_control(message)}\n")
    return code


def run_launch(args: argparse.Namespace, command: list[str]) -> int:
    from .api import TaskWatcher

    if args.queued is not None or args.run_hooks is not None or args.record_kept_ends is not None:
        # started by taskwatcher itself
        TaskWatcher(args.db).run_internal(
            queued=args.queued, hooks=args.run_hooks, record=args.record_kept_ends
        )
        return 0
    if args.after is not None and args.after_any is not None:
        raise UsageError("--after and --after-any go one at a time")
    ending = TaskWatcher(args.db).run(
        command,
        taskid=args.taskid,
        name=args.name,
        info1=args.info1,
        info2=args.info2,
        info3=args.info3,
        feedpath=args.feedpath,
        timeout=args.timeout,
        grace=args.grace,
        unique=args.unique,
        detach=args.detach,
        log=args.log,
        log_max=args.log_max,
        no_log=args.no_log,
        lease=args.lease,
        group=args.group,
        slots=args.slots,
        after=args.after if args.after is not None else args.after_any,
        after_any=args.after_any is not None,
        retries=args.retries,
        retry_delay=args.retry_delay,
        retry_backoff=args.retry_backoff,
        retry_on=args.retry_on,
        on_end=args.on_end,
    )
    if ending.exec_failed:  # as timeout(1) does; history has it too
        from .display import escape_control

        sys.stderr.write(f"taskwatcher: {escape_control(ending.termerror)}\n")
    if ending.interrupted:  # interrupted by Ctrl-C (say): end by it, so a calling shell loop stops too
        from .process import end_by_signal

        sys.stdout.flush()
        sys.stderr.flush()
        end_by_signal(ending.interrupted)
    return ending.exitcode if ending.exitcode is not None else EXIT_LAUNCH_FAILED


def _print_json(value: Any) -> None:
    # UTF-8 whatever the locale: JSON readers expect it, and a C locale must not crash us.
    sys.stdout.flush()
    sys.stdout.buffer.write((json.dumps(value, ensure_ascii=False) + "\n").encode("utf-8", "replace"))
    sys.stdout.buffer.flush()


def run_control(args: argparse.Namespace) -> int:
    from .api import TaskWatcher

    _check_control_options(args)
    tw = TaskWatcher(args.db)
    if args.initialize:
        tw.initialize(args.force)
    elif args.update:
        tw.update()
    elif args.list:
        _say_if_no_database(tw)
        if args.json:
            _print_json(tw.tasks_json(args.host))
        else:
            from .display import print_tasks

            print_tasks(tw.tasks(feedback=True, host=args.host))
    elif args.watch:
        from .watch import watch

        watch(tw)
    elif args.reserve:
        infos = dict(info1=args.info1, info2=args.info2, info3=args.info3)
        print(tw.reserve(args.name, **infos, unique=args.unique, ttl=args.ttl))
    elif args.feedback is not None:
        _print_json(tw.feedback(_id(args.feedback)))
    elif args.show is not None:
        detail = tw.show(_id(args.show))
        if args.json:
            _print_json(detail)
        else:
            from .display import print_show

            print_show(detail)
    elif args.history:
        _print_history(tw, args)
    elif args.clear:
        _say_if_no_database(tw)
        tw.clear()
    elif args.prune:
        pruned = tw.prune(keep=args.keep, max_age=args.max_age)  # a bad age is said first
        _say_if_no_database(tw)
        print(plural(pruned, "finished task") + " pruned")
    elif args.log is not None:
        _print_log(tw, _id(args.log), args.follow)
    elif args.kill is not None:
        print(tw.kill(args.kill))
    elif args.killall is not None:
        try:
            print("\n".join(tw.killall(args.killall)))
        except NotAllStopped as e:  # what was stopped is said too, then why the rest was not
            if e.done:
                print("\n".join(e.done))
            raise
    elif args.wait is not None:
        entry = tw.wait(_id(args.wait), args.timeout)
        if entry.exitcode is None:
            raise TaskwatcherError(f"task {entry.taskid} ended without an exit status: {entry.termerror}")
        return entry.exitcode
    return 0


def _id(value: int) -> int | None:
    """A task id option's value; None (the newest task) when it was given without one."""
    return None if value == NEWEST else value


def plural(n: int, noun: str) -> str:
    """``1 finished task``, ``3 finished tasks``."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _say_if_no_database(tw: Any) -> None:
    """A read on a path with no database answers empty and says so (a mistyped --db)."""
    if not tw.exists():
        from .display import escape_control

        sys.stderr.write(f"taskwatcher: no database exists at {escape_control(tw.shown)}\n")


def _print_history(tw: Any, args: argparse.Namespace) -> None:
    _say_if_no_database(tw)
    only = dict(name=args.name, since=args.since, last=args.last)
    if args.json:
        sys.stdout.flush()
        pieces = tw.iter_history_json(**only)
        sys.stdout.buffer.writelines(piece.encode("utf-8", "replace") for piece in pieces)
        return
    from .display import escape_control, print_history

    empty = "history is empty"
    if args.name is not None or args.since is not None:
        given = {"--name": args.name, "--since": args.since}
        empty = "no finished task matches " + escape_control(_options_text(given))
    print_history(tw.iter_history(**only), empty=empty)


def _options_text(options: dict[str, str | None]) -> str:
    """``--name x --since 2h``: the options given, as a person would type them back."""
    import shlex

    return " ".join(f"{k} {shlex.quote(v)}" for k, v in options.items() if v is not None)


def _print_log(tw: Any, taskid: int | None, follow: bool) -> None:
    sys.stdout.flush()
    out = sys.stdout.buffer
    if not follow:
        out.write(tw.read_log(taskid))
        return
    for chunk in tw.follow_log(taskid):
        out.write(chunk)
        out.flush()


# Options that go with some commands only, and those commands: refused elsewhere, not ignored.
_GOES_WITH = {
    "json": ("list", "history", "show"),
    "timeout": ("wait",),
    "force": ("initialize",),
    "last": ("history",),
    "since": ("history",),
    "follow": ("log",),
    "keep": ("prune",),
    "max_age": ("prune",),
    "name": ("reserve", "history"),
    "info1": ("reserve",),
    "info2": ("reserve",),
    "info3": ("reserve",),
    "unique": ("reserve",),
    "ttl": ("reserve",),
    "host": ("list",),
}
_COMMANDS = ("initialize", "update", "list", "reserve", "feedback", "history", "clear", "kill",
             "killall", "wait", "log", "watch", "prune", "show")  # fmt: skip


def _given(value: object) -> bool:
    # Not "value not in (None, False)": 0 == False, and 0 is NEWEST, an option given without its id.
    return value is not None and value is not False


def _check_control_options(args: argparse.Namespace) -> None:
    """An option given with a command it does not go with is an error naming the ones it goes with."""
    command = next(c for c in _COMMANDS if _given(getattr(args, c)))
    for option, commands in _GOES_WITH.items():
        if _given(getattr(args, option)) and command not in commands:
            flags = [f"--{c}" for c in commands]
            where = flags[0] if len(flags) == 1 else f"{', '.join(flags[:-1])} or {flags[-1]}"
            raise UsageError(f"--{option.replace('_', '-')} goes with {where}")
    if args.prune and args.keep is None and args.max_age is None:
        raise UsageError("--prune needs --keep N or --max-age AGE")


def run_parse(args: argparse.Namespace) -> int:
    from .feedback import parse_file

    _print_json(parse_file(args.feedback))
    return 0


def run_feed(args: argparse.Namespace) -> int:
    from .feedback import Feedback

    special = args.clear is not None or args.clear_all or args.heartbeat
    if (special and args.key is not None) or (not special and (args.key is None or args.value is None)):
        raise UsageError("give KEY VALUE, or one of --clear KEY, --clear-all, --heartbeat")
    try:
        feedback = Feedback()
        if args.clear is not None:
            feedback.clear(args.clear)
        elif args.clear_all:
            feedback.clear_all()
        elif args.heartbeat:
            feedback.heartbeat()
        else:
            feedback.set(args.key, args.value)
    except ValueError as e:
        raise UsageError(str(e)) from None
    return 0


def run_serve(args: argparse.Namespace) -> int:
    # Starlette and uvicorn are imported there, by this command only: the others' start-up stays.
    from .web.server import make_token, serve

    if args.make_token:
        print(make_token(args.token_file))
        return 0
    serve(args.db, args.bind, read_only=args.read_only, token_file=args.token_file, keepalive=args.keepalive)
    return 0


def run_completion(args: argparse.Namespace) -> int:
    if args.task_ids:
        from .api import TaskWatcher

        sys.stdout.write("".join(f"{i}\n" for i in TaskWatcher(args.db or None).recent_taskids()))
        return 0
    if args.shell is None:
        raise UsageError("name the shell: taskwatcher completion bash (or zsh)")
    sys.stdout.write(completion_script(args.shell))
    return 0


def completion_script(shell: str) -> str:
    """A bash (or zsh, through bashcompinit) completion script, made from the parser itself."""
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    cases = []
    for name, sub in subparsers.choices.items():
        options = sorted(
            opt for action in sub._actions for opt in action.option_strings if opt.startswith("--")
        )
        cases.append(f'        {name}) opts="{" ".join(options)}" ;;')
    script = _COMPLETION.replace("TOOLS", " ".join(subparsers.choices)).replace("CASES", "\n".join(cases))
    return ("autoload -U +X bashcompinit && bashcompinit\n" if shell == "zsh" else "") + script


_COMPLETION = """_taskwatcher_ids() {
    # The task ids of the database this command line names (--db), newest first.
    local i db=()
    for ((i = 1; i < ${#COMP_WORDS[@]} - 1; i++)); do
        [ "${COMP_WORDS[i]}" = --db ] && db=(--db "${COMP_WORDS[i+1]}")
    done
    taskwatcher completion --task-ids "${db[@]}" 2>/dev/null
}
_taskwatcher() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} opts
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W "TOOLS --help --version" -- "$cur"))
        return
    fi
    case "${COMP_WORDS[1]} $prev" in
        "control --log"|"control --wait"|"control --kill"|"control --show"|"control --feedback")
            # an id; an option may follow instead (the id is optional but for --kill)
            COMPREPLY=($(compgen -W "$(_taskwatcher_ids)" -- "$cur"))
            [ ${#COMPREPLY[@]} -gt 0 ] && return ;;
        *" --db"|"launch --log"|"parse --feedback"|*" --feedpath")
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    case "${COMP_WORDS[1]}" in
CASES
        *) opts="" ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}
complete -o default -F _taskwatcher taskwatcher
"""


if __name__ == "__main__":  # python -m taskwatcher.cli is the taskwatcher command
    sys.exit(main())
