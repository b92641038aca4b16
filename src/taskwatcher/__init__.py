"""taskwatcher: run any command as a supervised task, with feedback, timeouts and history.

``from taskwatcher import TaskWatcher`` for the Python API, ``Feedback`` for a task
that reports its progress.
"""

__version__ = "2.0.0"

__all__ = ["Feedback", "TaskWatcher", "__version__"]


def __getattr__(name: str) -> object:
    # Imported on first use, so that the CLI does not pay for what it does not need.
    if name == "Feedback":
        from .feedback import Feedback

        return Feedback
    if name == "TaskWatcher":
        from .api import TaskWatcher

        return TaskWatcher
    raise AttributeError(f"module 'taskwatcher' has no attribute {name!r}")
