"""Bad input at every interface (issue 3, item 6), and writes that cannot be made while a
task starts (item 4, first half).

Each row of CASES is one malformed input at one interface, driven through the real CLI
(``python -m taskwatcher ...``, cwd an empty folder). Every row starts from a copy of
the same small database (a unique reservation ``keep``, one finished task ``done``) and
checks:

- the exit code is SPEC's (launch: 125 for anything that stops it starting);
- stderr is exactly the one line in the row (no traceback), stdout is empty;
- nothing existing changed: every file under the row's folder has the same bytes after
  as before, and no new file appeared (SQLite's own ``-wal``/``-shm`` aside);
- a launch ran nothing: its command, ``touch $TMP/marker``, left no marker.

The table "Bad input" in RELIABILITY.md is this list, rendered by ``render_table`` (run
this file with Python to print it); ``test_reliability_md_has_this_table`` keeps the
two the same.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import random
import resource
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))  # conftest, when run as a script

from conftest import TW
from faults import osfaults
from taskwatcher.store.sqlite import SCHEMA_VERSION

HERE = Path(__file__).parent
RELIABILITY = HERE.parents[1] / "RELIABILITY.md"
BIG_LINE = 10 * 1024 * 1024  # a 10 MB feedback line


class Case(NamedTuple):
    id: str
    interface: str
    what: str  # the input, in words
    argv: tuple[str, ...]  # $DB, $TMP and $MARK are replaced; "-- touch $MARK" for launches
    code: int
    stderr: str  # the exact line, with $TMP for the row's folder; "" for none
    setup: str = ""  # a preparation, see SETUPS
    stdout: str | None = ""  # exact stdout; None: any JSON object
    shows: str = ""  # for a row that succeeds: what it prints, in words, for the table


DB = "$DB"
LAUNCH = ("launch", "--db", DB)
CONTROL = ("control", "--db", DB)
RUN = ("--", "touch", "$MARK")
LOCKED = "taskwatcher: database $TMP/state/tw.db: database is locked"
READONLY = "taskwatcher: database $TMP/state/tw.db: attempt to write a readonly database"
NO_FOLDER = ("taskwatcher: database $TMP/state/tw.db: unable to open database file (its folder "
             "$TMP/state is not writable: SQLite keeps its -wal and -shm files there)")  # fmt: skip
FULL = "taskwatcher: database $TMP/state/tw.db: disk I/O error (no space left in $TMP/state)"
FULL_OPEN = "taskwatcher: database $TMP/state/tw.db: database or disk is full (no space left in $TMP/state)"
FSIZE = "taskwatcher: database $TMP/state/tw.db: disk I/O error (file size limit: 1024 bytes)"
NOT_DB = "taskwatcher: $TMP/state/tw.db is not a taskwatcher database (not an SQLite file)"
OTHERS_MAY_WRITE = "taskwatcher: database folder $TMP/state may be written by other users"
REFUSED_FOLDER = "refused, whoever can write there can act as you; use a folder of your own"
REFUSED_FILE = "refused, whoever can write it can act as you"


FORMS = " (seconds, or a number with a unit: 500ms, 90s, 30m, 2h, 1d, 2w)"  # of a duration


def _usage(tool: str, text: str) -> str:
    return f"taskwatcher {tool}: error: {text}"


CASES = [
    # -- launch arguments ---------------------------------------------------------------
    Case("timeout-text", "launch", "non-numeric duration", (*LAUNCH, "--timeout", "soon", *RUN), 125,
         _usage("launch", "argument --timeout: not a duration: 'soon'" + FORMS)),
    Case("timeout-negative", "launch", "negative duration", (*LAUNCH, "--timeout", "-5", *RUN), 125,
         _usage("launch", "argument --timeout: not a duration: '-5'" + FORMS)),
    Case("timeout-zero", "launch", "zero timeout", (*LAUNCH, "--timeout", "0", *RUN), 125,
         "taskwatcher: --timeout must be a positive number of seconds"),
    Case("timeout-nan", "launch", "NaN duration", (*LAUNCH, "--timeout", "nan", *RUN), 125,
         _usage("launch", "argument --timeout: not a duration: 'nan'" + FORMS)),
    Case("timeout-huge", "launch", "duration over 31 years", (*LAUNCH, "--timeout", "1e300", *RUN), 125,
         _usage("launch", "argument --timeout: too long: '1e300' (at most 1e+09 seconds, about 31 years)")),
    Case("grace-text", "launch", "non-numeric grace", (*LAUNCH, "--grace", "x", *RUN), 125,
         _usage("launch", "argument --grace: not a duration: 'x'" + FORMS)),
    Case("taskid-text", "launch", "task id not an integer", (*LAUNCH, "--taskid", "abc", *RUN), 125,
         _usage("launch", "argument --taskid: a task id is an integer, not 'abc'")),
    Case("taskid-unknown", "launch", "unknown task id", (*LAUNCH, "--taskid", "999", *RUN), 125,
         "taskwatcher: task 999 is not reserved: nothing started"),
    Case("taskid-done", "launch", "id of a finished task", (*LAUNCH, "--taskid", "2", *RUN), 125,
         "taskwatcher: task 2 has already run: nothing started"),
    Case("unique-held", "launch", "--unique name held by a reservation",
         (*LAUNCH, "--name", "keep", "--unique", *RUN), 125,
         "taskwatcher: not started: name 'keep' is held by task 1"),
    Case("no-command", "launch", "missing command", LAUNCH, 125,
         "taskwatcher: no command given (put it after --)"),
    Case("dashdash-alone", "launch", "`--` and no command", (*LAUNCH, "--"), 125,
         "taskwatcher: no command given (put it after --)"),
    Case("empty-command", "launch", "empty command name", (*LAUNCH, "--", ""), 125,
         "taskwatcher: no command given (put it after --)"),
    Case("dash-command", "launch", "a command starting with `-`, without `--`", (*LAUNCH, "-weird"), 125,
         _usage("launch", "unknown option -weird: a command whose name starts with - goes after --")),
    Case("unknown-option", "launch", "unknown option", (*LAUNCH, "--nonsense", *RUN), 125,
         _usage("launch", "unknown option --nonsense: a command whose name starts with - goes after --")),
    Case("misspelt-option", "launch", "misspelt option", (*LAUNCH, "--timout", "5", *RUN), 125,
         _usage("launch", "unknown option --timout (did you mean --timeout?)")),
    Case("log-max-huge", "launch", "--log-max too large", (*LAUNCH, "--log-max", "99999999999G", *RUN),
         125, _usage("launch", "argument --log-max: too large: '99999999999G' (at most 9223372036854775807 "
                     "bytes)")),
    Case("log-folder-missing", "launch", "--log in a missing folder",
         (*LAUNCH, "--log", "$TMP/no/x.log", *RUN), 125, "taskwatcher: log folder $TMP/no does not exist"),
    Case("feedpath-missing", "launch", "missing feedpath", (*LAUNCH, "--feedpath", "$TMP/no", *RUN), 125,
         "taskwatcher: feedback folder $TMP/no does not exist"),
    Case("feedpath-file", "launch", "feedpath is a file", (*LAUNCH, "--feedpath", "$TMP/afile", *RUN), 125,
         "taskwatcher: feedback folder $TMP/afile is not a folder", "afile"),
    Case("feedpath-empty", "launch", "empty feedpath", (*LAUNCH, "--feedpath", "", *RUN), 125,
         "taskwatcher: --feedpath needs a folder"),
    Case("feedpath-readonly", "launch", "unwritable feedpath (chattr +i)",
         (*LAUNCH, "--feedpath", "$TMP/feeds", *RUN), 125,
         "taskwatcher: feedback folder $TMP/feeds is not writable", "feeds-immutable"),
    Case("feedpath-nobody", "launch", "feedpath without permission (as nobody)",
         (*LAUNCH, "--feedpath", "$TMP/feeds", *RUN), 125,
         "taskwatcher: feedback folder $TMP/feeds is not writable", "nobody-feeds"),
    Case("feedback-no-feedpath", "launch", "`{feedback}` without --feedpath",
         (*LAUNCH, "--", "touch", "$MARK", "{feedback}"), 125,
         "taskwatcher: {feedback} is used in the command but --feedpath is not given"),
    Case("nolog-detach", "launch", "--no-log with --detach", (*LAUNCH, "--no-log", "--detach", *RUN), 125,
         "taskwatcher: --no-log goes without --detach and --log: a detached task's output needs a log"),
    Case("log-max-text", "launch", "--log-max not a size", (*LAUNCH, "--log-max", "lots", *RUN), 125,
         _usage("launch", "argument --log-max: not a size in bytes: 'lots' (512K, 8M, 1G...)")),
    Case("db-empty", "launch", "empty --db", ("launch", "--db", "", *RUN), 125,
         "taskwatcher: --db needs a path"),
    # -- control arguments --------------------------------------------------------------
    Case("kill-text", "control", "task id not an integer", (*CONTROL, "--kill", "abc"), 2,
         _usage("control", "argument --kill: a task id is an integer, not 'abc'")),
    Case("kill-negative", "control", "negative task id", (*CONTROL, "--kill", "-3"), 2,
         _usage("control", "argument --kill: a task id is an integer from 1 to 9223372036854775807, "
                "not '-3'")),
    Case("kill-unknown", "control", "unknown task id", (*CONTROL, "--kill", "999"), 4,
         "taskwatcher: no task 999"),
    Case("kill-done", "control", "--kill of a finished task", (*CONTROL, "--kill", "2"), 4,
         "taskwatcher: task 2 has already ended"),
    Case("feedback-unknown", "control", "unknown task id", (*CONTROL, "--feedback", "999"), 4,
         "taskwatcher: no task 999"),
    Case("wait-unknown", "control", "unknown task id", (*CONTROL, "--wait", "999"), 4,
         "taskwatcher: no task 999 (or a reservation that expired or was cancelled)"),
    Case("killall-unknown", "control", "unknown name", (*CONTROL, "--killall", "nope"), 4,
         "taskwatcher: no task named 'nope'"),
    Case("no-command", "control", "no command", CONTROL, 2,
         _usage("control", "one of the arguments --initialize --update --list --reserve --feedback "
                "--history --clear --kill --killall --wait --log --show --watch --prune is required")),
    Case("misspelt-command", "control", "misspelt command", (*CONTROL, "--lsit"), 2,
         _usage("control", "unknown option --lsit (did you mean --list?)")),
    Case("name-with-list", "control", "`--name` with `--list`", (*CONTROL, "--list", "--name", "x"), 2,
         "taskwatcher: --name goes with --reserve or --history"),
    Case("option-before-tool", "control", "`-d` before the subcommand", ("-d", *CONTROL, "--list"), 2,
         "taskwatcher: error: -d goes after the subcommand: taskwatcher control -d ..."),
    Case("kill-no-id", "control", "`--kill` without an id", (*CONTROL, "--kill"), 2,
         _usage("control", "argument --kill: expected one argument")),
    Case("no-db-list", "control", "`--list` on a path with no database",
         ("control", "--db", "$TMP/typo.db", "--list"), 0, "taskwatcher: no database exists at $TMP/typo.db",
         "", "no task running or reserved\n", "`no task running or reserved`; nothing is created"),
    Case("no-db-history", "control", "`--history --json` on a path with no database",
         ("control", "--db", "$TMP/typo.db", "--history", "--json"), 0,
         "taskwatcher: no database exists at $TMP/typo.db", "", "{}\n", "`{}`; nothing is created"),
    Case("no-db-show", "control", "`--show ID` on a path with no database",
         ("control", "--db", "$TMP/typo.db", "--show", "3"), 4,
         "taskwatcher: no task 3: no database exists at $TMP/typo.db"),
    Case("no-db-log", "control", "`--log` (the newest task) on a path with no database",
         ("control", "--db", "$TMP/no/typo.db", "--log"), 4,
         "taskwatcher: no task: no database exists at $TMP/no/typo.db"),
    Case("two-commands", "control", "two commands", (*CONTROL, "--list", "--clear"), 2,
         _usage("control", "argument --clear: not allowed with argument --list")),
    Case("since-text", "control", "bad --since", (*CONTROL, "--history", "--since", "yesterday"), 2,
         "taskwatcher: not a time: 'yesterday' (unix seconds, 2026-11-28, 2026-11-28T14:30, "
         "or an age like 2h)"),
    Case("since-date", "control", "impossible --since date", (*CONTROL, "--history", "--since", "2026-13-45"),
         2, "taskwatcher: not a time: '2026-13-45' (unix seconds, 2026-11-28, 2026-11-28T14:30, "
         "or an age like 2h)"),
    Case("last-zero", "control", "--last 0", (*CONTROL, "--history", "--last", "0"), 2,
         _usage("control", "argument --last: not a positive whole number: '0'")),
    Case("ttl-zero", "control", "--ttl 0", (*CONTROL, "--reserve", "--ttl", "0"), 2,
         "taskwatcher: --ttl must be more than 0 seconds"),
    Case("ttl-negative", "control", "negative --ttl", (*CONTROL, "--reserve", "--ttl", "-1"), 2,
         _usage("control", "argument --ttl: not a duration: '-1'" + FORMS)),
    Case("unique-no-name", "control", "--unique without --name", (*CONTROL, "--reserve", "--unique"), 2,
         "taskwatcher: --unique needs --name"),
    Case("unique-held", "control", "--unique name already held",
         (*CONTROL, "--reserve", "--name", "keep", "--unique"), 3,
         "taskwatcher: name 'keep' is held by task 1"),
    Case("json-kill", "control", "--json with --kill", (*CONTROL, "--kill", "1", "--json"), 2,
         "taskwatcher: --json goes with --list, --history or --show"),
    Case("wait-timeout-text", "control", "non-numeric --timeout",
         (*CONTROL, "--wait", "1", "--timeout", "x"), 2,
         _usage("control", "argument --timeout: not a duration: 'x'" + FORMS)),
    Case("db-empty", "control", "empty --db", ("control", "--db", "", "--list"), 2,
         "taskwatcher: --db needs a path"),
    # -- parse and feedback files -------------------------------------------------------
    Case("missing", "parse", "missing file", ("parse", "--feedback", "$TMP/nope"), 1,
         "taskwatcher: cannot read feedback file $TMP/nope: No such file or directory"),
    Case("folder", "parse", "a folder", ("parse", "--feedback", "$TMP/state"), 1,
         "taskwatcher: cannot read feedback file $TMP/state: Is a directory"),
    Case("no-permission", "parse", "unreadable file (as nobody)", ("parse", "--feedback", "$TMP/fb.log"), 1,
         "taskwatcher: cannot read feedback file $TMP/fb.log: Permission denied", "nobody-feedback"),
    Case("no-option", "parse", "no --feedback", ("parse",), 2,
         _usage("parse", "the following arguments are required: --feedback")),
    Case("binary", "feedback file", "64 KB of random bytes", ("parse", "--feedback", "$TMP/fb.log"), 0,
         "", "feedback-binary", None, "a JSON object (whatever lines the bytes happen to form)"),
    Case("utf8", "feedback file", "invalid UTF-8", ("parse", "--feedback", "$TMP/fb.log"), 0,
         "", "feedback-utf8", '{"a": "\ufffd\ufffd1", "b": "2"}\n', '`{"a": "\ufffd\ufffd1", "b": "2"}`'),
    Case("nul", "feedback file", "NUL bytes", ("parse", "--feedback", "$TMP/fb.log"), 0,
         "", "feedback-nul", '{"a": "1\\u0000", "b": "2"}\n', '`{"a": "1\\u0000", "b": "2"}`'),
    Case("big-line", "feedback file", "a 10 MB line", ("parse", "--feedback", "$TMP/fb.log"), 0,
         "", "feedback-big", None, "the 10 MB value, and the next line's key"),
    Case("no-newline", "feedback file", "last line without newline", ("parse", "--feedback", "$TMP/fb.log"),
         0, "", "feedback-no-newline", '{"a": "1"}\n', '`{"a": "1"}` (a finished file: the line counts)'),
    # -- feed -----------------------------------------------------------------------------
    Case("no-variable", "feed", "outside a task (no $TASKWATCHER_FEEDBACK)", ("feed", "a", "1"), 1,
         "taskwatcher: TASKWATCHER_FEEDBACK is not set: run this under taskwatcher launch --feedpath"),
    Case("bad-key", "feed", "key with a space", ("feed", "a b", "1"), 2,
         "taskwatcher: bad feedback key 'a b': no white space or brackets, not starting with a digit",
         "feed-env"),
    Case("newline", "feed", "value with a line break", ("feed", "a", "1\n2"), 2,
         "taskwatcher: a feedback value is one line: it cannot hold a line break", "feed-env"),
    Case("folder", "feed", "$TASKWATCHER_FEEDBACK is a folder", ("feed", "a", "1"), 1,
         "taskwatcher: cannot write feedback file $TMP/state: Is a directory", "feed-env-folder"),
    # -- database files -----------------------------------------------------------------
    Case("text-list", "database", "a text file", (*CONTROL, "--list"), 1, NOT_DB, "db-text"),
    Case("text-launch", "database", "a text file", (*LAUNCH, *RUN), 125, NOT_DB, "db-text"),
    Case("garbage", "database", "SQLite header, then garbage", (*CONTROL, "--reserve"), 1, NOT_DB,
         "db-garbage"),
    Case("foreign", "database", "another program's SQLite file (a table named `a'b`)",
         (*CONTROL, "--initialize"), 1,
         "taskwatcher: $TMP/state/tw.db is not a taskwatcher database (tables: a'b, people)", "db-foreign"),
    Case("newer", "database", "a newer schema", (*CONTROL, "--reserve"), 1,
         "taskwatcher: database $TMP/state/tw.db has schema 99, newer than this"
         f" taskwatcher's {SCHEMA_VERSION}: upgrade taskwatcher", "db-newer"),
    Case("folder", "database", "the path is a folder", (*LAUNCH, *RUN), 125,
         "taskwatcher: database $TMP/state/tw.db is a folder", "db-folder"),
    Case("parent-file", "database", "its folder is a file",
         ("control", "--db", "$TMP/afile/tw.db", "--reserve"), 1,
         "taskwatcher: cannot create the folder of database $TMP/afile/tw.db: $TMP/afile is a file", "afile"),
    Case("ro-file-list", "database", "read-only file (chattr +i)", (*CONTROL, "--list", "--json"), 0, "",
         "db-immutable", None, "the tasks (reading needs no write)"),
    Case("ro-file-reserve", "database", "read-only file (chattr +i)", (*CONTROL, "--reserve"), 1, READONLY,
         "db-immutable"),
    Case("ro-file-clear", "database", "read-only file (chattr +i)", (*CONTROL, "--clear"), 1, READONLY,
         "db-immutable"),
    Case("ro-file-launch", "database", "read-only file (chattr +i)", (*LAUNCH, *RUN), 125, READONLY,
         "db-immutable"),
    Case("ro-file-launch-taskid", "database", "read-only file (chattr +i)",
         (*LAUNCH, "--taskid", "1", *RUN), 125, READONLY, "db-immutable"),
    Case("ro-folder-list", "database", "read-only folder (chattr +i)", (*CONTROL, "--list"), 1, NO_FOLDER,
         "folder-immutable"),
    Case("ro-folder-launch", "database", "read-only folder (chattr +i)", (*LAUNCH, *RUN), 125, NO_FOLDER,
         "folder-immutable"),
    Case("ro-fs-list", "database", "read-only filesystem (tmpfs remounted ro)", (*CONTROL, "--list"), 1,
         NO_FOLDER, "fs-readonly"),
    Case("ro-fs-launch", "database", "read-only filesystem (tmpfs remounted ro)", (*LAUNCH, *RUN), 125,
         NO_FOLDER, "fs-readonly"),
    Case("no-permission-folder", "database", "folder without permission (as nobody)", (*CONTROL, "--list"), 1,
         NO_FOLDER, "nobody-folder"),
    Case("no-permission-file", "database", "file without permission (as nobody)", (*CONTROL, "--list"), 1,
         "taskwatcher: database $TMP/state/tw.db: unable to open database file (no permission to read it)",
         "nobody-file"),
    Case("no-permission-launch", "database", "folder without permission (as nobody)", (*LAUNCH, *RUN), 125,
         NO_FOLDER, "nobody-folder"),
    Case("full-list", "database", "full disk (tmpfs filled)", (*CONTROL, "--list"), 1, FULL, "fs-full"),
    Case("full-launch", "database", "full disk (tmpfs filled)", (*LAUNCH, *RUN), 125, FULL, "fs-full"),
    Case("full-open-reserve", "database", "full disk, database open elsewhere", (*CONTROL, "--reserve"), 1,
         FULL_OPEN, "fs-full-open"),
    Case("full-open-launch", "database", "full disk, database open elsewhere", (*LAUNCH, *RUN), 125,
         FULL_OPEN, "fs-full-open"),
    Case("full-open-launch-taskid", "database", "full disk, database open elsewhere",
         (*LAUNCH, "--taskid", "1", *RUN), 125, FULL_OPEN, "fs-full-open"),
    Case("full-open-detach", "database", "full disk, database open elsewhere",
         (*LAUNCH, "--detach", *RUN), 125, FULL_OPEN, "fs-full-open"),
    Case("fsize-reserve", "database", "file size limit (RLIMIT_FSIZE 1 KB)", (*CONTROL, "--reserve"), 1,
         FSIZE, "fsize"),
    Case("fsize-launch", "database", "file size limit (RLIMIT_FSIZE 1 KB)", (*LAUNCH, *RUN), 125, FSIZE,
         "fsize"),
    Case("locked-reserve", "database", "locked past the busy timeout (0.3 s)", (*CONTROL, "--reserve"), 1,
         LOCKED, "locked"),
    Case("locked-launch", "database", "locked past the busy timeout (0.3 s)", (*LAUNCH, *RUN), 125, LOCKED,
         "locked"),
    Case("locked-launch-taskid", "database", "locked past the busy timeout (0.3 s)",
         (*LAUNCH, "--taskid", "1", *RUN), 125, LOCKED, "locked"),
    Case("locked-detach", "database", "locked past the busy timeout (0.3 s)", (*LAUNCH, "--detach", *RUN),
         125, LOCKED, "locked"),
    # -- whose files: the database is used only where nobody else may write -------------------
    Case("folder-others", "trust", "database folder writable by all (0777)", (*CONTROL, "--list"), 1,
         f"{OTHERS_MAY_WRITE} (mode 777): {REFUSED_FOLDER}",
         "folder-777"),
    Case("folder-sticky", "trust", "database folder like /tmp (1777)", (*LAUNCH, *RUN), 125,
         f"{OTHERS_MAY_WRITE} (mode 1777): {REFUSED_FOLDER}",
         "folder-1777"),
    Case("folder-group", "trust", "database folder writable by a shared group (0775, nogroup)",
         (*CONTROL, "--reserve"), 1,
         f"{OTHERS_MAY_WRITE} (mode 775): {REFUSED_FOLDER}",
         "folder-group"),
    Case("folder-nobody", "trust", "database folder of another user", (*CONTROL, "--list", "--json"), 1,
         "taskwatcher: database folder $TMP/state belongs to another user (nobody): refused, whoever can "
         "write there can act as you", "folder-nobody"),
    Case("db-nobody", "trust", "database file of another user", (*CONTROL, "--list"), 1,
         f"taskwatcher: database $TMP/state/tw.db belongs to another user (nobody): {REFUSED_FILE}",
         "db-nobody"),
    Case("wal-nobody", "trust", "a -wal planted by another user", (*CONTROL, "--history"), 1,
         f"taskwatcher: database file $TMP/state/tw.db-wal belongs to another user (nobody): {REFUSED_FILE}",
         "wal-nobody"),
    Case("logs-nobody", "trust", "a -logs folder made by another user", (*LAUNCH, *RUN), 125,
         "taskwatcher: logs folder $TMP/state/tw-logs belongs to another user (nobody): refused, whoever "
         "can write there can act as you", "logs-nobody"),
    Case("pending-others", "trust", "a -pending folder writable by all", (*CONTROL, "--list"), 1,
         "taskwatcher: folder of kept-aside ends $TMP/state/tw-pending may be written by other users "
         f"(mode 777): {REFUSED_FOLDER}", "pending-777"),
    Case("log-is-db", "trust", "--log naming the database", (*LAUNCH, "--log", "$DB", *RUN), 125,
         "taskwatcher: --log $TMP/state/tw.db is the database $TMP/state/tw.db or one of its files: "
         "nothing started"),
    Case("log-is-wal", "trust", "--log naming its -wal", (*LAUNCH, "--log", "$DB-wal", *RUN), 125,
         "taskwatcher: --log $TMP/state/tw.db-wal is the database $TMP/state/tw.db or one of its files: "
         "nothing started"),
    Case("log-rotates-onto-db", "trust", "--log whose older half FILE.1 is the database",
         ("launch", "--db", "$TMP/state/tw.log.1", "--log", "$TMP/state/tw.log", *RUN), 125,
         "taskwatcher: --log $TMP/state/tw.log is the database $TMP/state/tw.log.1 or one of its files: "
         "nothing started", "db-named-log-1"),
    Case("log-in-pending", "trust", "--log inside the -pending folder",
         (*LAUNCH, "--log", "$TMP/state/tw-pending/x.log", *RUN), 125,
         "taskwatcher: --log $TMP/state/tw-pending/x.log is inside $TMP/state/tw-pending, taskwatcher's "
         "own folder: nothing started"),
    # -- hostile inputs: never an internal error ------------------------------------------------
    Case("db-char-device", "hostile", "--db a character device (/dev/null)", ("control", "--db", "/dev/null",
         "--list"), 1, "taskwatcher: /dev/null is not a taskwatcher database (not a regular file)"),
    Case("db-char-device-here", "hostile", "--db a character device in the folder (mknod)",
         (*LAUNCH, *RUN), 125, "taskwatcher: $TMP/state/tw.db is not a taskwatcher database (not a regular "
         "file)", "db-chardev"),
    Case("db-fifo", "hostile", "--db a FIFO", (*CONTROL, "--list"), 1,
         "taskwatcher: $TMP/state/tw.db is not a taskwatcher database (not a regular file)", "db-fifo"),
    Case("db-not-utf8", "hostile", "--db not UTF-8", ("control", "--db", "$TMP/state/\udcff.db", "--list"),
         1, "taskwatcher: database $TMP/state/\\xff.db is not valid UTF-8: taskwatcher cannot keep it"),
    Case("feedpath-not-utf8", "hostile", "--feedpath not UTF-8",
         (*LAUNCH, "--feedpath", "$TMP/\udcff", *RUN), 125,
         "taskwatcher: --feedpath $TMP/\\xff is not valid UTF-8: taskwatcher cannot keep it"),
    Case("killall-not-utf8", "hostile", "--killall not UTF-8", (*CONTROL, "--killall", "b\udcffad"), 4,
         "taskwatcher: no task named 'b\\xffad'"),
    Case("history-name-not-utf8", "hostile", "--history --name not UTF-8",
         (*CONTROL, "--history", "--json", "--name", "b\udcffad"), 0, "", stdout="{}\n", shows="`{}`"),
    Case("few-fds", "hostile", "few file descriptors (RLIMIT_NOFILE 16)", (*LAUNCH, *RUN), 125,
         "taskwatcher: too few file descriptors: a launch needs 32 free (ulimit -n is 16): nothing started",
         "nofile"),
    Case("few-fds-detach", "hostile", "few file descriptors (RLIMIT_NOFILE 16)", (*LAUNCH, "--detach", *RUN),
         125, "taskwatcher: too few file descriptors: a launch needs 32 free (ulimit -n is 16): nothing "
         "started", "nofile"),
    Case("config-fifo", "hostile", "TASKWATCHER_CONFIG a FIFO", (*LAUNCH, *RUN), 125,
         "taskwatcher: configuration file $TMP/config.toml: not a regular file", "config-fifo"),
    Case("config-zero", "hostile", "TASKWATCHER_CONFIG /dev/zero", (*CONTROL, "--update"), 1,
         "taskwatcher: configuration file /dev/zero: not a regular file", "config-zero"),
    Case("config-huge", "hostile", "TASKWATCHER_CONFIG of 2 MB", (*LAUNCH, *RUN), 125,
         "taskwatcher: configuration file $TMP/config.toml: larger than 1024 KiB", "config-huge"),
]  # fmt: skip


# -- the rows' world --------------------------------------------------------------------
@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The database every row starts from: task 1 reserved uniquely as ``keep`` (for an
    hour), task 2 ``done`` in history; checkpointed (no -wal)."""
    folder = tmp_path_factory.mktemp("template")
    db = folder / "tw.db"
    env = {**os.environ, "PYTHONPATH": osfaults.SRC}
    env.pop("TASKWATCHER_DB", None)
    for args in (
        ["control", "--db", str(db), "--reserve", "--name", "keep", "--unique", "--ttl", "3600"],
        ["launch", "--db", str(db), "--name", "done", "--", "true"],
    ):
        subprocess.run([*TW, *args], env=env, check=True, capture_output=True)
    assert not Path(f"{db}-wal").exists()
    return db.read_bytes()


class World:
    """One row's folder ($TMP, readable by nobody): state/tw.db, cwd/, and what the setup adds."""

    def __init__(self, template: bytes) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="tw-bad-"))
        os.chmod(self.tmp, 0o755)
        self.state = self.tmp / "state"
        self.state.mkdir()
        self.db = self.state / "tw.db"
        self.db.write_bytes(template)
        self.cwd = self.tmp / "cwd"
        self.cwd.mkdir(mode=0o777)
        os.chmod(self.cwd, 0o777)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TASKWATCHER_")}
        self.env.update(
            PYTHONPATH=osfaults.SRC, HOME=str(self.tmp / "home"), XDG_STATE_HOME=str(self.tmp / "xdg")
        )
        self.run_kw: dict[str, Any] = {}
        self.python = sys.executable

    def expand(self, text: str) -> str:
        return (
            text.replace("$DB", str(self.db))
            .replace("$MARK", str(self.tmp / "marker"))
            .replace("$TMP", str(self.tmp))
        )

    def files(self) -> dict[str, bytes]:
        """Every file's bytes, by path under $TMP (SQLite's -wal and -shm aside)."""
        found = {}
        for root, _dirs, names in os.walk(self.tmp):
            for name in names:
                if name.endswith(("-wal", "-shm")):
                    continue
                path = Path(root, name)
                kind = path.lstat().st_mode
                # A FIFO or a device is compared by its kind and mode (reading it would block or never end).
                content = path.read_bytes() if stat.S_ISREG(kind) else f"{kind:o}".encode()
                found[str(path.relative_to(self.tmp))] = content
        return found

    def remove(self) -> None:
        for root, dirs, _names in os.walk(self.tmp):
            for d in dirs:
                os.chmod(Path(root, d), 0o755)
        shutil.rmtree(self.tmp, ignore_errors=True)


def _need(problem: str | None) -> None:
    if problem:
        pytest.skip(problem)


def _as_nobody(w: World) -> None:
    python, why = osfaults.nobody_python()
    if python is None:
        pytest.skip(why)
    w.python = python
    w.run_kw.update(osfaults.as_nobody())


@contextlib.contextmanager
def prepared(w: World, setup: str) -> Iterator[None]:
    if setup == "afile":
        (w.tmp / "afile").write_text("a file\n")
    elif setup in ("feeds-immutable", "nobody-feeds"):
        (w.tmp / "feeds").mkdir()
        if setup == "nobody-feeds":
            _as_nobody(w)
            osfaults.give_to_nobody(w.state, w.db)
            os.chmod(w.tmp / "feeds", 0o755)  # root's, not writable by nobody
        else:
            _need(osfaults.chattr_problem())
            with osfaults.immutable(w.tmp / "feeds"):
                yield
            return
    elif setup == "nobody-feedback":
        _as_nobody(w)
        (w.tmp / "fb.log").write_text("[a]1\n")
        os.chmod(w.tmp / "fb.log", 0o600)  # root's
    elif setup.startswith("feedback-"):
        content = {
            "feedback-binary": random.Random(3).randbytes(65536),
            "feedback-utf8": b"[a]\xff\xfe1\n[b]2\n",
            "feedback-nul": b"[a]1\0\n[b]2\n\0\0\n",
            "feedback-big": b"[big]" + b"x" * BIG_LINE + b"\n[after]1\n",
            "feedback-no-newline": b"[a]1",
        }[setup]
        (w.tmp / "fb.log").write_bytes(content)
    elif setup == "feed-env":
        w.env["TASKWATCHER_FEEDBACK"] = str(w.tmp / "fb.log")
    elif setup == "feed-env-folder":
        w.env["TASKWATCHER_FEEDBACK"] = str(w.state)
    elif setup == "db-text":
        w.db.write_bytes(b"just some text\n" * 200)
    elif setup == "db-garbage":
        w.db.write_bytes(b"SQLite format 3\0" + random.Random(4).randbytes(8192))
    elif setup == "db-foreign":
        w.db.unlink()
        with contextlib.closing(sqlite3.connect(w.db)) as c, c:
            c.execute('CREATE TABLE "a\'b" (x)')
            c.execute("CREATE TABLE people (name TEXT)")
            c.execute("INSERT INTO people VALUES ('ada')")
    elif setup == "db-newer":
        with contextlib.closing(sqlite3.connect(w.db)) as c:
            c.execute("PRAGMA user_version=99")
    elif setup == "db-folder":
        w.db.unlink()
        w.db.mkdir()
    elif setup in ("db-immutable", "folder-immutable"):
        _need(osfaults.chattr_problem())
        with osfaults.immutable(w.db if setup == "db-immutable" else w.state):
            yield
        return
    elif setup in ("fs-readonly", "fs-full", "fs-full-open"):
        _need(osfaults.mount_problem())
        with osfaults.tmpfs(w.state):
            if setup == "fs-readonly":
                osfaults.remount_read_only(w.state)
                yield
                return
            holder = sqlite3.connect(w.db) if setup == "fs-full-open" else None
            try:
                if holder is not None:  # the -wal and -shm exist and are sized: the write itself fails
                    holder.execute("SELECT count(*) FROM tasks").fetchall()
                osfaults.fill(w.state)
                yield
            finally:
                if holder is not None:
                    holder.close()
        return
    elif setup == "fsize":
        w.run_kw["preexec_fn"] = osfaults.file_size_limit(1024)
    elif setup == "locked":
        w.env["TASKWATCHER_BUSY_TIMEOUT"] = "0.3"
        holder = sqlite3.connect(w.db, isolation_level=None)
        holder.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        return
    elif setup in ("folder-777", "folder-1777"):
        os.chmod(w.state, 0o777 if setup == "folder-777" else 0o1777)
    elif setup == "folder-group":
        os.chown(w.state, -1, grp.getgrnam("nogroup").gr_gid)
        os.chmod(w.state, 0o775)
    elif setup in ("folder-nobody", "db-nobody"):
        osfaults.give_to_nobody(w.state if setup == "folder-nobody" else w.db)
    elif setup == "wal-nobody":
        Path(f"{w.db}-wal").touch()
        osfaults.give_to_nobody(Path(f"{w.db}-wal"))
    elif setup == "logs-nobody":
        (w.state / "tw-logs").mkdir()
        osfaults.give_to_nobody(w.state / "tw-logs")
    elif setup == "pending-777":
        (w.state / "tw-pending").mkdir()
        os.chmod(w.state / "tw-pending", 0o777)
    elif setup == "db-named-log-1":
        w.db.rename(w.state / "tw.log.1")
    elif setup in ("db-chardev", "db-fifo"):
        w.db.unlink()
        if setup == "db-fifo":
            os.mkfifo(w.db)
        else:
            try:
                os.mknod(w.db, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # as /dev/null
            except PermissionError:
                pytest.skip("mknod needs root")
    elif setup == "nofile":
        w.run_kw["preexec_fn"] = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))
    elif setup in ("config-fifo", "config-huge"):
        config = w.tmp / "config.toml"
        if setup == "config-fifo":
            os.mkfifo(config)
        else:
            config.write_bytes(b"#" * 2_000_000)
        w.env["TASKWATCHER_CONFIG"] = str(config)
    elif setup == "config-zero":
        w.env["TASKWATCHER_CONFIG"] = "/dev/zero"
    elif setup in ("nobody-folder", "nobody-file"):
        _as_nobody(w)
        osfaults.give_to_nobody(w.state)
        if setup == "nobody-folder":
            os.chmod(w.state, 0)
        else:
            os.chmod(w.db, 0)  # root's file in nobody's folder
    elif setup:
        raise AssertionError(f"unknown setup {setup}")
    yield


def run_case(w: World, case: Case) -> subprocess.CompletedProcess:
    argv = [w.expand(a) for a in case.argv]
    return subprocess.run(
        [w.python, "-m", "taskwatcher", *argv], env=w.env, cwd=w.cwd, capture_output=True,
        timeout=60, **w.run_kw,
    )  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[f"{c.interface.replace(' ', '-')}-{c.id}" for c in CASES])
def test_bad_input(case: Case, template: bytes) -> None:
    w = World(template)
    try:
        with prepared(w, case.setup):
            before = w.files()
            proc = run_case(w, case)
            after = w.files()
        err = proc.stderr.decode("utf-8", "replace")
        out = proc.stdout.decode("utf-8", "replace")
        assert "Traceback" not in err and "internal error" not in err, err
        assert (proc.returncode, err.replace(str(w.tmp), "$TMP")) == (
            case.code,
            case.stderr + "\n" if case.stderr else "",
        )
        if case.stdout is None:
            assert isinstance(json.loads(out), dict)
        else:
            assert out == case.stdout
        if case.id == "big-line":
            assert json.loads(out) == {"big": "x" * BIG_LINE, "after": "1"}
        assert not (w.tmp / "marker").exists(), "the command ran"
        assert sorted(after) == sorted(before), "files appeared or vanished"
        changed = [name for name in before if after[name] != before[name]]
        assert not changed, f"changed: {changed}"
        assert not os.listdir(w.cwd), "something was written in the current folder"
    finally:
        w.remove()


# -- the table in RELIABILITY.md ------------------------------------------------------------
def _cell(text: str) -> str:
    # Undecodable bytes (surrogate escapes in an argument) are shown as \xNN, as taskwatcher does.
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.replace("|", "\\|").replace("\n", "\\n")


def render_table() -> str:
    lines = [
        "| # | interface | input | command | exit | stderr (one line; `$TMP` the row's folder) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for n, c in enumerate(CASES, 1):
        command = " ".join(a if a and " " not in a and "\n" not in a else repr(a) for a in c.argv)
        result = f"`{_cell(c.stderr)}`" if c.stderr else f"(nothing; stdout: {_cell(c.shows)})"
        lines.append(f"| {n} | {c.interface} | {_cell(c.what)} | `{_cell(command)}` | {c.code} | {result} |")
    return "\n".join(lines) + "\n"


def test_reliability_md_has_this_table() -> None:
    assert render_table() in RELIABILITY.read_text(), (
        "RELIABILITY.md's bad-input table differs from CASES: print it with "
        "`python tests/faults/test_bad_input.py` and paste it"
    )


if __name__ == "__main__":
    sys.stdout.write(render_table())
