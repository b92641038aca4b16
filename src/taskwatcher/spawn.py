"""Starting the task's process: fork, its own session, a start barrier, exec.

The child is forked directly (not through subprocess) so that it can wait on a
barrier before exec: it runs the command only once the launcher has committed
its pid, so no process runs that the database does not know. It also asks the
kernel for SIGKILL when the launcher dies, so it never outlives supervision.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Mapping, Sequence

from . import process
from .process import Identity, set_parent_death_signal

# Exit statuses as coreutils timeout(1) gives them.
EXIT_TIMEOUT = 124
EXIT_CANNOT_START = 125
EXIT_NOT_EXECUTABLE = 126
EXIT_NOT_FOUND = 127
_GO = b"g"


class Child:
    """A forked child held at its start barrier."""

    def __init__(self, pid: int, identity: Identity, pidfd: int | None, barrier: int, errors: int) -> None:
        self.pid, self.identity, self.pidfd = pid, identity, pidfd
        self._barrier, self._errors = barrier, errors

    def release(self) -> tuple[int, str] | None:
        """Let the child exec; return (exit status, reason) if exec failed."""
        try:
            os.write(self._barrier, _GO)
        except BrokenPipeError:
            pass
        os.close(self._barrier)
        report = b""
        while chunk := os.read(self._errors, 64):
            report += chunk
        os.close(self._errors)
        if not report:
            return None
        code, _, arg0 = report.decode(errors="replace").partition(" ")
        return exec_failure(int(code), arg0)

    def abort(self) -> None:
        """Drop the child before it runs anything: it exits at the closed barrier."""
        os.close(self._barrier)
        os.close(self._errors)
        os.waitpid(self.pid, 0)


def exec_failure(err: int, arg0: str) -> tuple[int, str]:
    if err == errno.ENOENT:
        return EXIT_NOT_FOUND, f"command not found: {arg0}"
    return EXIT_NOT_EXECUTABLE, f"command not executable: {arg0}: {os.strerror(err)}"


_RESET_SIGNALS = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGCHLD,
    signal.SIGPIPE,
    signal.SIGQUIT,
    signal.SIGXFSZ,
    signal.SIGTSTP,
    signal.SIGTTIN,
    signal.SIGTTOU,
)


def fork_held(
    argv: Sequence[str],
    env: Mapping[str, str],
    stdio: Sequence[int] | None,
    ignored: frozenset[int] = frozenset(),
    terminal: int | None = None,
    foreground: int | None = None,
) -> Child:
    """Fork a child in its own session that execs ``argv`` once released.

    ``stdio``: three fds to become the child's stdin, stdout and stderr, or None
    to keep the launcher's. ``ignored``: signals ignored when the launcher started
    (``nohup``), which stay ignored in the task; the others get their default action.
    ``terminal``: a pseudo-terminal (slave) made the session's controlling terminal,
    so that /dev/tty opens, the task's group is its foreground group and a resize
    reaches it as SIGWINCH. ``foreground``: the launcher's own controlling terminal
    (``--no-log``), which the task takes: it stays in the launcher's session, in a
    process group of its own made that terminal's foreground group, as a shell runs a job.
    """
    import fcntl  # before the fork: the child only makes system calls
    import termios

    barrier_r, barrier_w = os.pipe()
    errors_r, errors_w = os.pipe2(os.O_CLOEXEC)
    launcher = os.getpid()
    set_parent_death_signal(0)  # loads libc before the fork, not in the child
    pid = os.fork()
    if pid == 0:  # the child: only system calls until exec, then _exit
        code = EXIT_CANNOT_START
        try:
            signal.set_wakeup_fd(-1)
            for sig in _RESET_SIGNALS:
                signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            os.close(barrier_w)
            os.close(errors_r)
            if foreground is None:
                os.setsid()
            else:
                os.setpgid(0, 0)
            if terminal is not None:
                fcntl.ioctl(terminal, termios.TIOCSCTTY, 0)
            set_parent_death_signal(signal.SIGKILL)
            if os.getppid() != launcher:  # the launcher died before the line above
                os._exit(code)
            if stdio is not None:
                for target, fd in enumerate(stdio):
                    os.dup2(fd, target)
            if os.read(barrier_r, 1) != _GO:  # the launcher gave up or died
                os._exit(code)
            os.close(barrier_r)
            exec_command(list(argv), dict(env))
        except OSError as e:
            err = e.errno or errno.EINVAL
            code = EXIT_NOT_FOUND if err == errno.ENOENT else EXIT_NOT_EXECUTABLE
            try:
                os.write(errors_w, f"{err} {argv[0]}".encode(errors="replace"))
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(barrier_r)
    os.close(errors_w)
    if foreground is not None:
        try:
            os.setpgid(pid, pid)  # the child does it too: whichever runs first, it is done
        except OSError:
            pass
        give_terminal(foreground, pid)
    pidfd = process.pidfd(pid)  # None: no pidfds here, and the SIGCHLD wake-up notices the exit
    identity = Identity.of(pid)
    assert identity is not None  # our unreaped child cannot have vanished
    return Child(pid, identity, pidfd, barrier_w, errors_r)


def foreground_terminal() -> int | None:
    """fd 0, if the launcher's stdin and stdout are both its controlling terminal and its
    group is that terminal's foreground group; else None: not on a terminal, run in the
    background, or in a pipeline (``launch --no-log cmd | less``: ``less``, in the
    launcher's group, keeps the terminal, as the shell gave it)."""
    try:
        same = os.isatty(0) and os.isatty(1) and os.fstat(0).st_rdev == os.fstat(1).st_rdev
        return 0 if same and os.tcgetpgrp(0) == os.getpgrp() else None
    except OSError:  # ENOTTY: a terminal, but not this session's
        return None


def give_terminal(fd: int, pgid: int) -> None:
    """Make ``pgid`` the terminal's foreground group. SIGTTOU is blocked meanwhile, as a
    shell does: a background launcher handing the terminal back would otherwise be stopped."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTTOU])
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:  # the terminal is gone (hung up), or that group has ended
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def exec_command(argv: list[str], env: dict[str, str]) -> None:
    """Exec ``argv`` as POSIX execvp does: searched on PATH, and a file the kernel cannot
    run (ENOEXEC: an executable script without a ``#!`` line) run by the POSIX shell.

    Raises the OSError of the first candidate that existed but failed, else the last.
    """
    name = argv[0]
    candidates = [name] if "/" in name else [os.path.join(d or ".", name) for d in os.get_exec_path(env)]
    first: OSError | None = None
    last: OSError | None = None
    for path in candidates:
        try:
            os.execve(path, argv, env)
        except OSError as e:
            if e.errno == errno.ENOEXEC:  # as execvp, timeout(1), env(1) do
                os.execve("/bin/sh", ["/bin/sh", path, *argv[1:]], env)
            last = e
            if first is None and e.errno not in (errno.ENOENT, errno.ENOTDIR):
                first = e
    raise first or last or FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def decode_wait_status(status: int) -> tuple[int, int | None]:
    """(exit status as a shell reports it, terminating signal or None)."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return 128 + sig, sig
    return os.waitstatus_to_exitcode(status), None


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
