"""Process facts and safe signalling: identities that survive pid reuse, process trees.

A pid alone names a process only until it is reaped; a pid with its start time
(clock ticks since boot, /proc/PID/stat field 22) and the boot id names one
process for good. Every signal taskwatcher sends to a stored pid goes through
:func:`signal_verified`, which re-reads the start time through a pidfd first.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
from collections import namedtuple
from functools import cache

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


class ProcStat(namedtuple("ProcStat", "pid state ppid start")):
    """The fields of /proc/PID/stat that taskwatcher uses: pid, state (R, S, Z...),
    parent pid, start time (clock ticks since boot)."""

    __slots__ = ()


def read_stat(pid: int) -> ProcStat | None:
    """The process's stat fields, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError as e:
        if e.errno in (errno.ESRCH, errno.ENOENT):
            return None
        raise
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    return ProcStat(pid, fields[0].decode(), int(fields[1]), int(fields[19]))


def is_running(stat: ProcStat) -> bool:
    """True unless the process is dead (a zombie or being reaped).

    A zombie thread-group leader (its main thread called pthread_exit while other
    threads go on) shows Z yet runs: one of its other threads still lives.
    """
    if stat.state not in "ZX":
        return True
    return stat.state == "Z" and _live_thread(stat.pid) is not None


def _live_thread(pid: int) -> int | None:
    """A thread of ``pid`` other than its leader that is not dead, or None."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tids:
        if tid == str(pid):
            continue
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        if raw[raw.rfind(b")") + 2 :][:1] not in (b"Z", b"X"):
            return int(tid)
    return None


def start_ticks(pid: int) -> int | None:
    stat = read_stat(pid)
    return stat.start if stat else None


@cache
def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


@cache
def host_name() -> str:
    return os.uname().nodename


@cache
def pid_namespace() -> int | None:
    """This process's pid namespace (the inode of /proc/self/ns/pid), or None if unknown.

    Two launchers on one host but in two pid namespaces (containers sharing a
    volume) see different processes under the same pids: a row is only judged,
    signalled or archived as lost from the namespace it was made in.
    """
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None


class Identity(namedtuple("Identity", "pid start boot")):
    """One process for good: pid, start time (clock ticks since boot) and boot id."""

    __slots__ = ()

    @classmethod
    def of(cls, pid: int) -> Identity | None:
        start = start_ticks(pid)
        return None if start is None else cls(pid, start, boot_id())

    def is_alive(self) -> bool:
        """True if this very process still runs (a zombie does not run)."""
        if self.boot != boot_id():
            return False
        stat = read_stat(self.pid)
        return stat is not None and stat.start == self.start and is_running(stat)


@cache
def boot_time() -> float:
    """The unix time the machine booted (/proc/stat btime)."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    return 0.0


def identity_started_near(pid: int, unix_start: float, tolerance: float = 2.0) -> Identity | None:
    """The process ``pid`` if it started within ``tolerance`` s of ``unix_start``, else None.

    For rows of taskwatcher 1.x, which stored a pid and a start time in seconds
    but no start ticks: close enough to tell the task from a recycled pid.
    """
    ident = Identity.of(pid)
    if ident is None:
        return None
    started = boot_time() + ident.start / os.sysconf("SC_CLK_TCK")
    return ident if abs(started - unix_start) <= tolerance else None


def _pidfd_open(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except ProcessLookupError:
        raise
    except OSError:  # no pidfd here (old kernel, seccomp): fall back to kill()
        return None


def pidfd(pid: int) -> int | None:
    """A pidfd of ``pid`` (readable once it exits), or None: no such process, or no
    pidfds here. The one place taskwatcher opens a pidfd."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def signal_verified(ident: Identity, sig: int, refused: set[Identity] | None = None) -> bool:
    """Send ``sig`` to ``ident`` only if it is still that process. True if sent.

    The pidfd pins the process between the start-time check and the signal, so
    a pid recycled in between is never hit. A process this user may not signal
    (a setuid program) is not an error: it is added to ``refused`` if given.
    """
    if ident.boot != boot_id():
        return False
    try:
        fd = _pidfd_open(ident.pid)
    except ProcessLookupError:
        return False
    try:
        stat = read_stat(ident.pid)
        if stat is None or stat.start != ident.start or not is_running(stat):
            return False  # another process, or one already dead: nothing to stop
        if fd is None:
            os.kill(ident.pid, sig)
        else:
            signal.pidfd_send_signal(fd, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        if refused is not None:
            refused.add(ident)
        return False
    finally:
        if fd is not None:
            os.close(fd)


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from every thread's children list."""
    kids: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                kids.extend(int(k) for k in f.read().split())
    return kids


def descendants(root: int) -> list[Identity]:
    """Every live descendant of ``root`` (a zombie thread-group leader with live threads counts)."""
    found: list[Identity] = []
    stack = [(root, kid) for kid in children(root)]
    seen = set()
    while stack:
        parent, pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        stack.extend((pid, kid) for kid in children(pid))
        stat = read_stat(pid)
        if stat is None or not is_running(stat):
            continue
        # The pid was listed under ``parent``; if it is no longer its child, either it was
        # re-parented (its parent died: the subreaper, ``root`` or one below it, took it)
        # or the pid was reused by a stranger meanwhile. Only the first is ours.
        if stat.ppid != parent and not _descends_from(stat.ppid, root):
            continue
        found.append(Identity(pid, stat.start, boot_id()))
    return found


def _descends_from(pid: int, root: int) -> bool:
    """True if ``pid`` is ``root`` or one of its descendants, following parents up."""
    for _ in range(4096):  # a chain of parents is never this long; a loop of reused pids might be
        if pid == root:
            return True
        if pid <= 1:
            return False
        stat = read_stat(pid)
        if stat is None:
            return False
        pid = stat.ppid
    return False


def signal_descendants(
    root: int, sig: int, skip: set[Identity] | None = None, refused: set[Identity] | None = None
) -> set[Identity]:
    """Signal every live descendant of ``root`` not in ``skip``; the set of those signalled.

    A descendant re-parented since its parent died (to ``root``, the subreaper) is
    still signalled; each signal goes through a pidfd after a start-time check,
    so a pid reused meanwhile is spared. Those that may not be signalled go to
    ``refused``.
    """
    sent = set()
    for ident in descendants(root):
        if skip is not None and ident in skip:
            continue
        if signal_verified(ident, sig, refused):
            sent.add(ident)
    return sent


def processes_with_env(name: str, value: str, started_since: int) -> list[Identity]:
    """Live processes started at or after ``started_since`` whose environment has name=value.

    Finds a task's processes after its launcher died, even those that left its
    session (setsid) and so its process group. Only processes we may read count:
    a setuid program's environment is closed to its user (see RELIABILITY.md).
    """
    needle = f"{name}={value}".encode()
    found: list[Identity] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        if needle in _environ(int(entry)).split(b"\0"):
            stat = read_stat(int(entry))
            if stat and stat.start >= started_since and is_running(stat):
                found.append(Identity(stat.pid, stat.start, boot_id()))
    return found


def _environ(pid: int) -> bytes:
    """The process's environment block; b"" if unreadable.

    A zombie thread-group leader has no memory of its own to read (ESRCH, or
    nothing): its live threads share the one it had, and
    /proc/PID/task/TID/environ reads it.
    """
    environ = _read_bytes(f"/proc/{pid}/environ")
    if environ == b"":
        tid = _live_thread(pid)
        if tid is not None:
            environ = _read_bytes(f"/proc/{pid}/task/{tid}/environ")
    return environ or b""


def _read_bytes(path: str) -> bytes | None:
    """The file's bytes; b"" if it is gone or empty; None if it is closed to us."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except PermissionError:  # another user's process, or a setuid one
        return None
    except OSError:
        return b""


@cache
def libc():  # type: ignore[no-untyped-def]
    """The C library, for the calls os does not make (prctl, inotify); loaded once."""
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def set_child_subreaper() -> bool:
    """Make this process adopt its orphaned descendants, so none escapes a stop."""
    try:
        return libc().prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except OSError:
        return False


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent thread dies."""
    try:
        return libc().prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0
    except OSError:
        return False


def end_by_signal(sig: int) -> None:
    """End this process by ``sig``, as if it had not been caught (default action, unblocked).

    A shell running the launcher then sees "killed by SIGINT" and stops its loop,
    as it would have for the bare command. No core file is written for SIGQUIT:
    nothing is ever written to the current folder.
    """
    import resource

    with contextlib.suppress(OSError, ValueError):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [sig])
    os.kill(os.getpid(), sig)
    os._exit(128 + sig)  # not reached: the signal's default action ends the process


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"SIG{sig}"


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
