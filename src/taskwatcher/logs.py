"""Loggers that cost nothing until used: ``logging`` is imported only when a message is due.

``control --list --json`` is polled by web pages; importing logging alone would
add about a tenth of its start-up time. Debug messages need ``--debug``, which
imports and configures logging; warnings import it on the spot.
"""

from __future__ import annotations

import sys


class Logger:
    """The few calls taskwatcher makes on a ``logging.Logger``, imported lazily."""

    def __init__(self, name: str) -> None:
        self.name = name

    def debugging(self) -> bool:
        """True if debug messages would be shown (never before logging is imported)."""
        logging = sys.modules.get("logging")
        return logging is not None and logging.getLogger(self.name).isEnabledFor(logging.DEBUG)

    def debug(self, msg: str, *args: object) -> None:
        if self.debugging():
            sys.modules["logging"].getLogger(self.name).debug(msg, *args)

    def warning(self, msg: str, *args: object) -> None:
        import logging

        logging.getLogger(self.name).warning(msg, *args)

    def exception(self, msg: str, *args: object) -> None:
        import logging

        logging.getLogger(self.name).exception(msg, *args)


if __name__ == "__main__":
    from .entrypoints import not_a_command

    not_a_command()
