"""taskwatcher: run any command as a supervised task, with feedback, timeouts and history."""

__version__ = "2.0.0"
