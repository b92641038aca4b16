"""taskwatcher 1.7's command lines over taskwatcher 2: ``python -m taskwatcher.control``,
``python -m taskwatcher.launch`` and ``python -m taskwatcher.parse``.

The grammar is 1.7's own argparse, option for option and help text for help text, so
that every line a 1.7 site runs parses as it did and ``--help`` reads the same. What a
script can read is printed as 1.7 printed it: ``Taskid N has been reserved``, the JSON
of ``task --list --json`` and ``history --list`` with 1.7's keys first (taskwatcher 2's
extra keys after them), 1.7's tables, ``parse``'s JSON encoded twice, and 1.7's
refusal messages on stderr with exit 1. Underneath is taskwatcher 2, through the same
:class:`~taskwatcher.api.TaskWatcher` the ``taskwatcher`` command uses: process trees,
real exit statuses, a timeout that stops a silent task, history with feedback.

1.7's bugs that no script can depend on are not kept (MIGRATING.md lists each
difference): nothing is written to the current folder (1.7 wrote ``debug.log``),
``launch`` exits with the task's status (1.7: 0 whatever happened) or, interrupted
by a signal, ends by it as taskwatcher 2's launcher does, and a command
that does nothing is an error (1.7 exited 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from ..errors import (
    FeedbackFileError,
    NameTaken,
    NoSuchTask,
    ReservationError,
    StartFailed,
    TasksRunning,
    TaskwatcherError,
)

TYPE_CHECKING = False  # typing is imported only by type checkers: it costs start-up time
if TYPE_CHECKING:
    from typing import Any

    from ..api import TaskWatcher

DEFAULT_DB = "sqlite.db"  # 1.7's control --db: a file in the current folder
DEFAULT_TIMEOUT = 30  # 1.7's launch --timeout, for a task that reports (see launch_main)
DEFAULT_NAME = "noname"  # 1.7's name of a task reserved without --taskname
FEEDBACK_OPTION = "--feedback"  # in a command, what told 1.7 that the task writes a feedback file
EXIT_REFUSED = 1  # 1.7 refused with sys.exit(message): exit 1, the message on stderr
EXIT_CANNOT_START = 125  # spawn.EXIT_CANNOT_START, as the taskwatcher command exits

# 1.7's columns, in 1.7's order: the first keys of each JSON object printed.
TASK_KEYS = ("name", "info1", "info2", "info3", "pid", "status", "feedback",
             "reservetime", "starttime", "duration", "lastupdate", "timeout")  # fmt: skip
HISTORY_KEYS = ("taskid", "taskname", "info1", "info2", "info3", "termsignal", "termerror",
                "starttime", "endtime", "duration", "feedback")  # fmt: skip


class Refusal(Exception):
    """A request 1.7 refused, with 1.7's own message: exit 1."""


# -- 1.7's grammar, as 1.7 declared it ------------------------------------------------------
def control_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """1.7's control.py parser, and its three subcommands' parsers by name."""
    parser = argparse.ArgumentParser(description="Task controller")
    parser.set_defaults(func="none")
    parser.add_argument("--debug", "-d", help="turn on debug", action="store_true")
    parser.add_argument("--db", help="sqlite file (default sqlite.sb)", default=DEFAULT_DB)
    subparsers = parser.add_subparsers(help="sub-command help")

    task = subparsers.add_parser("task", help="active tasks")
    task.set_defaults(func="task")
    task.add_argument("--list", help="list tasks", action="store_true")
    task.add_argument("--reserve", help="reserve a taskid", action="store_true")
    task.add_argument("--unique", help="taskname should be unique", action="store_true")
    task.add_argument("--taskname", help="taskname")
    task.add_argument("--info1", help="any information")
    task.add_argument("--info2", help="any information")
    task.add_argument("--info3", help="any information")
    task.add_argument("--feedback", metavar="taskid", help="returns feedback")
    task.add_argument("--kill", metavar="taskid", help="kill task from its taskid")
    task.add_argument("--killall", metavar="taskname", help="kill all tasks by name")
    task.add_argument("--json", help="json output", action="store_true")

    history = subparsers.add_parser("history", help="compeleted tasks")
    history.set_defaults(func="history")
    history.add_argument("--list", help="display all completed tasks", action="store_true")
    history.add_argument("--human", help="human readable output", action="store_true")
    history.add_argument("--clear", help="clear history", action="store_true")

    database = subparsers.add_parser("database", help="database maintenance")
    database.set_defaults(func="database")
    database.add_argument(
        "--initialize",
        help="creates or recreates a task database (all info are lost)",
        action="store_true",
    )
    database.add_argument(
        "--update", help="updates database timing information (taks durations)", action="store_true"
    )
    return parser, {"task": task, "history": history, "database": database}


def launch_parser() -> argparse.ArgumentParser:
    """1.7's launch.py parser: the command is everything from the first word that is not an option."""
    parser = argparse.ArgumentParser(description="Launch program as a task.")
    parser.add_argument("--taskid", help="reserved task identifier", required=True)
    parser.add_argument("--name", help="Task name")
    parser.add_argument("--info1", help="any information")
    parser.add_argument("--info2", help="any information")
    parser.add_argument("--info3", help="any information")
    parser.add_argument("--db", help="sqlite db file", required=True)
    parser.add_argument("--feedpath", help="Path where feedback file is expected")
    parser.add_argument("--timeout", help="timeout timer for the task")
    parser.add_argument("--debug", "-d", help="Debugging on", action="store_true")
    parser.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        help="Our command to run (ex: ./command -option1 -option2 foo)",
    )
    return parser


def parse_parser() -> argparse.ArgumentParser:
    """1.7's parse.py parser."""
    parser = argparse.ArgumentParser(description="Task controller")
    parser.set_defaults(func="none")
    parser.add_argument("--debug", "-d", help="turn on debug", action="store_true")
    parser.add_argument(
        "--feedback", metavar="filename", help="selects feedback file to process", required=True
    )
    return parser


# -- the three entry points --------------------------------------------------------------------
def control_main(argv: Sequence[str] | None = None) -> int:
    """``python -m taskwatcher.control``: one of task, history, database, as 1.7 ran them."""
    parser, subcommands = control_parser()
    args = parser.parse_args(argv)
    _log_on_stderr(args.debug)
    if args.func == "none":  # 1.7 exited 0 here, having done nothing
        parser.error("a command is needed: task, history or database")
    run = {"task": _task, "history": _history, "database": _database}[args.func]
    return _refusals_exit_1(lambda: run(args, subcommands[args.func]), args.debug)


def launch_main(argv: Sequence[str] | None = None) -> int:
    """``python -m taskwatcher.launch``: run the command in the foreground, supervised; its exit status.

    As 1.7 did, the words after the options are joined and split again on white space
    (``-- "cmd arg"`` and ``-- cmd arg`` are the same), every ``--`` among them is
    dropped, and the timeout (default 30 s) is the longest silence of the feedback file
    ``FEEDPATH/feedback_ID.log``, only for a command that has ``--feedback`` (else 1.7
    watched nothing: no time limit).
    """
    parser = launch_parser()
    args = parser.parse_args(argv)
    _log_on_stderr(args.debug)
    command_line = " ".join(word for word in args.command if word != "--")
    print(f"Command_line={command_line}", flush=True)  # 1.7 printed it first, on stdout
    command = command_line.split()
    watched = FEEDBACK_OPTION in command and bool(args.feedpath)
    timeout = _timeout(parser, args.timeout) if watched else None
    return _refusals_exit_1(lambda: _launch(args, command, timeout), args.debug)


def parse_main(argv: Sequence[str] | None = None) -> int:
    """``python -m taskwatcher.parse``: the file's JSON encoded twice (1.7's output, byte for byte)."""
    args = parse_parser().parse_args(argv)
    _log_on_stderr(args.debug)
    return _refusals_exit_1(lambda: _parse(args.feedback), args.debug)


def _parse(path: str) -> int:
    if not path:
        raise Refusal("file is required")
    print(json.dumps(json.dumps(read_feedback(path))))
    return 0


# -- control: task ------------------------------------------------------------------------------
def _task(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # 1.7's order: the first of these options given is the one done.
    tw = _watcher(args.db)
    if args.list:
        tasks = tasks_as_1x(tw.tasks_json())
        if args.json:
            print(json.dumps(tasks))
        else:
            print_task_table(tasks)
    elif args.reserve:
        infos = dict(info1=args.info1, info2=args.info2, info3=args.info3)
        try:
            taskid = tw.reserve(args.taskname or DEFAULT_NAME, **infos, unique=args.unique)
        except NameTaken:
            raise Refusal("Could not reserve task, already exist and unique is set") from None
        print(f"Taskid {taskid} has been reserved")
    elif args.kill is not None:
        _kill(tw, args.kill)
    elif args.killall is not None:
        try:
            tw.killall(args.killall)
        except NoSuchTask:
            pass  # 1.7: nothing of that name, nothing to do
    elif args.feedback is not None:  # 1.7 took the option and printed nothing: this is what it documented
        try:
            print(json.dumps(tw.feedback(_task_id(args.feedback))))
        except (NoSuchTask, ValueError):
            raise Refusal(f"unknown taskid {args.feedback}") from None
    else:
        parser.error("one of --list, --reserve, --kill, --killall, --feedback is needed")
    return 0


def _kill(tw: TaskWatcher, taskid: str) -> None:
    """Stop a running task (its whole tree, SIGTERM then SIGKILL) and return once it is archived."""
    task = tw.tasks_json().get(taskid)  # the id as 1.7 looked it up: the same string
    if task is None:
        raise Refusal("unknown taskid, won't kill")
    if task["status"] == "RESERVED":
        raise Refusal("task is in status reserved, not running, won't kill")
    try:
        tw.kill(int(taskid))
    except NoSuchTask:  # it ended meanwhile
        raise Refusal("unknown taskid, won't kill") from None


def tasks_as_1x(tasks: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``--list --json``'s tasks in 1.7's shape: 1.7's keys first, ``feedback`` 0/1 (None
    for a reservation, whose row 1.7 left empty), then taskwatcher 2's keys."""
    shaped = {}
    for taskid, task in tasks.items():
        feedback = None if task["status"] == "RESERVED" else int(bool(task["feedback"]))
        first = {key: task.get(key) for key in TASK_KEYS} | {"feedback": feedback}
        shaped[taskid] = first | {k: v for k, v in task.items() if k not in first}
    return shaped


_TASK_RULE = "-" * 181
_TASK_HEADER = (
    "| task id  |      task name       |     info1    |     info2    |     info3    |   pid  |"
    "   status   | feedback | reserve time | starting time | duration | last update  | timeout  |"
)
_TASK_ROW = (
    "| {:>8} | {:20} | {:12} | {:12} | {:12} | {:>6} | {:>10} | {:>8} | {:>12} | {:>13} |"
    " {:>8} | {:>12} | {:>8} |"
)


def print_task_table(tasks: dict[str, dict[str, Any]]) -> None:
    """1.7's table of tasks (every task: 1.7 printed only the first one), or ``No tasks.``."""
    if not tasks:
        print("No tasks.")
        return
    print(_TASK_RULE, _TASK_HEADER, _TASK_RULE, sep="\n")
    for taskid, task in tasks.items():
        print(_TASK_ROW.format(taskid, *(str(task[key]) for key in TASK_KEYS)))
    print(_TASK_RULE)


# -- control: history ---------------------------------------------------------------------------
def _history(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not (args.list or args.clear):
        parser.error("one of --list, --clear is needed")
    tw = _watcher(args.db)
    if args.list:
        history = json.loads(tw.history_json())  # 1.7's keys first already; feedback a JSON object
        if args.human:
            print_history_table(history)
        else:
            print(json.dumps(history))
    if args.clear:  # 1.7 took the option and did nothing: this is what it documented
        tw.clear()
    return 0


_HISTORY_RULE = "-" * 180
_HISTORY_HEADER = (
    "|    id    | task id  |      task name       |     info1    |     info2    |     info3    |"
    "termsignal | termerror | starting time | ending time | duration |      feedback         |"
)
_HISTORY_ROW = (
    "| {:>8} | {:>8} | {:20} | {:12} | {:12} | {:12} |{:>10} | {:>9} | {:>13} | {:>11} | {:>8} | {:>21} |"
)


def print_history_table(history: dict[str, dict[str, Any]]) -> None:
    """1.7's table of finished tasks (the feedback column as JSON)."""
    print(_HISTORY_RULE, _HISTORY_HEADER, _HISTORY_RULE, sep="\n")
    for historyid, entry in history.items():
        cells = [json.dumps(entry[k]) if k == "feedback" else str(entry[k]) for k in HISTORY_KEYS]
        print(_HISTORY_ROW.format(historyid, *cells))
    print(_HISTORY_RULE)


# -- control: database ----------------------------------------------------------------------------
def _database(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if not (args.initialize or args.update):
        parser.error("one of --initialize, --update is needed")
    tw = _watcher(args.db)
    if args.initialize:
        try:
            tw.initialize()
        except TasksRunning as e:  # 1.7 deleted the file under them
            raise TaskwatcherError(f"database not initialized: {e}") from None
        print(f"Initializing database {args.db}")
    if args.update:
        tw.update()
    return 0


# -- launch -------------------------------------------------------------------------------------
def _launch(args: argparse.Namespace, command: list[str], timeout: float | None) -> int:
    # 1.7's checks, in 1.7's order, with 1.7's messages
    if not os.path.isfile(args.db):
        raise Refusal(f"db file {args.db} does not exist")
    if args.feedpath and not os.path.isdir(args.feedpath):
        raise Refusal("feedpath does not exist or is not a directory")
    tw = _watcher(args.db)
    task = tw.tasks_json().get(args.taskid)  # expired reservations are gone from it
    if task is None or task["status"] != "RESERVED":
        raise Refusal(f"taskid={args.taskid} is not clear to start")
    if not command:
        raise Refusal("no command to launch")
    try:
        ending = tw.run(
            command,
            taskid=int(args.taskid),
            name=args.name or None,  # else the reservation's
            info1=args.info1,
            info2=args.info2,
            info3=args.info3,
            feedpath=args.feedpath or None,
            timeout=timeout,
        )
    except ReservationError as e:  # what taskwatcher 2 refuses beyond 1.7: an unwritable feedpath...
        raise TaskwatcherError(str(e)) from None
    except StartFailed as e:
        sys.stderr.write(f"taskwatcher: {e}\n")
        return e.exit_code
    if ending.exec_failed:  # not found, not executable: 127, 126, as the taskwatcher command says
        sys.stderr.write(f"taskwatcher: {ending.termerror}\n")
    if ending.interrupted:  # Ctrl-C (say): end by it, as 1.7's launcher and taskwatcher 2's did
        from ..process import end_by_signal

        sys.stdout.flush()
        sys.stderr.flush()
        end_by_signal(ending.interrupted)
    return ending.exitcode if ending.exitcode is not None else EXIT_CANNOT_START


def _timeout(parser: argparse.ArgumentParser, text: str | None) -> float:
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < 1e9:
        parser.error(f"argument --timeout: not a positive number of seconds: {text!r}")
    return value


# -- parse ---------------------------------------------------------------------------------------
# 1.7's feedback line, from its parse.py: applied to each line once stripped of white space
# (str.strip: Unicode's), with no flag. A key is ASCII letters, digits, "-" and "_" (a digit
# first included); the value is the rest of the line, and an empty one removes the key.
V17_LINE = r"\[(?P<key>[A-Za-z0-9\-_]+)\](?P<value>.*)"


def read_feedback(path: str) -> dict[str, str]:
    """The feedback file read as 1.7's parse read it, line for line; ``{}`` if it cannot be opened.

    1.7's own reading is kept on purpose (``open(path, encoding="utf-8")``, universal
    newlines: a line ends at ``\\n``, ``\\r\\n`` or ``\\r`` and nowhere else; a byte order
    mark kept as a character, so a first line after one is not a feedback line), so that
    its output is 1.7's byte for byte. A file that cannot be opened, not there yet
    included, reads as ``{}`` as in 1.7: back-ends ask before the task's first line (the
    ``taskwatcher parse`` command calls it an error). Bytes that are not UTF-8 are
    refused (one line on stderr, nothing on stdout, exit 1), as 1.7 failed on them.
    """
    import re

    line_format = re.compile(V17_LINE)
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                match = line_format.match(line.strip())
                if match is None:
                    continue
                if match["value"]:
                    values[match["key"]] = match["value"]
                else:
                    values.pop(match["key"], None)
    except UnicodeDecodeError as e:  # 1.7: a traceback, exit 1, nothing on stdout
        raise FeedbackFileError(f"feedback file {path} is not UTF-8 text ({e.reason})") from None
    except OSError as e:  # 1.7 printed what it had read (nothing, unless reading failed midway)
        if _debugging():
            sys.stderr.write(f"taskwatcher: cannot read feedback file {path}: {e.strerror}\n")
    return values


# -- shared -----------------------------------------------------------------------------------------
def _watcher(db: str) -> TaskWatcher:
    from ..api import TaskWatcher

    return TaskWatcher(db)


def _task_id(text: str) -> int:
    value = int(text)
    if not 1 <= value < 2**63:
        raise ValueError(text)
    return value


def _refusals_exit_1(action: Any, debug: bool) -> int:
    """Run ``action``; 1.7's refusals and taskwatcher 2's errors are one line on stderr, exit 1
    (2 for a usage error)."""
    try:
        return action()
    except Refusal as e:
        return _refuse(str(e))
    except TaskwatcherError as e:
        _log_traceback(debug)
        sys.stderr.write(f"taskwatcher: {e}\n")
        return e.exit_code if e.exit_code == 2 else EXIT_REFUSED
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader left (| head): not an error worth a message
        sys.stderr.close()
        return 0
    except Exception as e:  # one line, as the taskwatcher command says it
        _log_traceback(debug)
        sys.stderr.write(f"taskwatcher: internal error: {type(e).__name__}: {e}\n")
        return EXIT_REFUSED


def _log_traceback(debug: bool) -> None:
    if debug:
        import logging

        logging.getLogger("taskwatcher").exception("failed")


def _refuse(message: str) -> int:
    sys.stderr.write(f"{message}\n")
    return EXIT_REFUSED


def _log_on_stderr(debug: bool) -> None:
    """1.7's ``-d``: here the debug log goes to stderr (1.7 wrote debug.log in the current folder)."""
    if debug:
        import logging

        logging.basicConfig(
            level=logging.DEBUG, stream=sys.stderr, format="taskwatcher[%(process)d] %(name)s: %(message)s"
        )


def _debugging() -> bool:
    logging = sys.modules.get("logging")
    return logging is not None and logging.getLogger("taskwatcher").isEnabledFor(logging.DEBUG)


if __name__ == "__main__":
    from ..entrypoints import not_a_command

    not_a_command()
