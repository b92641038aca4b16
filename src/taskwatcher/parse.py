"""``python -m taskwatcher.parse``: taskwatcher 1.7's feedback parser command line (see ``compat.v17``).

The feedback format of taskwatcher 2 is ``feedback``; this module only prints a file's
JSON as 1.7 printed it.
"""

if __name__ == "__main__":
    from .compat.v17 import parse_main

    raise SystemExit(parse_main())
