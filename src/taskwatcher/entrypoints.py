"""Which modules of the package are commands, and what the others say when run with ``python -m``.

A module run as ``python -m taskwatcher.X`` that does nothing and exits 0 would let a
script believe it acted (taskwatcher 1.x's ``python -m taskwatcher.control`` did act).
So every module that is not a command ends with a guard calling :func:`not_a_command`,
which says so in one line and exits 2; ``tests/test_entrypoints.py`` runs every module
to hold each one to it.
"""

from __future__ import annotations

import sys

EXIT_NOT_A_COMMAND = 2  # a usage error, as argparse's
COMMANDS = "python -m taskwatcher, and taskwatcher 1.7's python -m taskwatcher.control, .launch, .parse"


def not_a_command() -> None:
    """Say that the module run as ``__main__`` is not a command, and exit 2."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    name = spec.name.removesuffix(".__main__") if spec is not None else sys.argv[0]
    sys.stderr.write(f"{name} is not a command (the commands: {COMMANDS})\n")
    sys.exit(EXIT_NOT_A_COMMAND)


if __name__ == "__main__":
    not_a_command()
