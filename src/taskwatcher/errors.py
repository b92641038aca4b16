"""Typed failures of the library; the CLI maps each to an exit code (SPEC, control)."""

from __future__ import annotations


class TaskwatcherError(Exception):
    """Base of every failure taskwatcher reports to its user."""

    exit_code = 1


class UsageError(TaskwatcherError):
    """The caller's arguments are wrong (a bad id, a bad duration, two commands...)."""

    exit_code = 2


class StoreError(TaskwatcherError):
    """The database cannot be opened, read or written."""

    exit_code = 1


class NoDatabase(StoreError):
    """A command that only reads found no database at the path (and created none)."""


class NotADatabase(StoreError):
    """The file exists but is not a taskwatcher database; it is left untouched."""


class Refused(TaskwatcherError):
    """The request is valid but the current state forbids it."""

    exit_code = 3


class NameTaken(Refused):
    """A unique reservation's name is held by a reserved or running task."""

    def __init__(self, name: str, holder: int) -> None:
        super().__init__(f"name {name!r} is held by task {holder}")
        self.name = name
        self.holder = holder


class NotAllStopped(Refused):
    """Some tasks were stopped, others could not be from here (they run on another host)."""

    def __init__(self, done: list[str], message: str) -> None:
        super().__init__(message)
        self.done = done


class TasksRunning(Refused):
    """The database cannot be recreated while tasks run (unless forced)."""


class NoSuchTask(TaskwatcherError):
    """No reserved, running or finished task has that id (or name)."""

    exit_code = 4


class WaitTimeout(TaskwatcherError):
    """The task was still running when the wait's time ran out."""

    exit_code = 124


class NoLog(TaskwatcherError):
    """The task keeps no log (launched with --no-log, or before logs existed)."""

    exit_code = 1


class ReservationError(TaskwatcherError):
    """A launch names a task id that is not a current reservation."""

    exit_code = 125


class FeedbackFileError(TaskwatcherError):
    """A feedback file is missing or cannot be read."""

    exit_code = 1


class FeedbackNotAFile(FeedbackFileError):
    """A task's feedback path is a link, FIFO, device, socket or folder: never followed or read."""


class StartFailed(TaskwatcherError):
    """The task could not be started; the exit status says why (125, 126, 127)."""

    def __init__(self, exit_code: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class NotPermitted(Refused):
    """The task's processes may not be signalled by this user (a setuid program, say)."""


class RunsElsewhere(TaskwatcherError):
    """The task runs on another host or in another pid namespace: only there can it be stopped."""

    exit_code = 1


class LauncherTimeout(TaskwatcherError):
    """A task's launcher, asked to stop it, has not finished in time."""

    exit_code = 1


class ConfigError(TaskwatcherError):
    """The configuration file cannot be read or says something taskwatcher cannot use."""

    exit_code = 1


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
