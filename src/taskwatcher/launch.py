"""``python -m taskwatcher.launch``: taskwatcher 1.7's launcher command line (see ``compat.v17``).

The launcher of taskwatcher 2 is ``launcher``; this module only hands 1.7's command
line over to it.
"""

if __name__ == "__main__":
    from .compat.v17 import launch_main

    raise SystemExit(launch_main())
