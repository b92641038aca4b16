"""Older command lines kept working over taskwatcher 2: ``v17`` is taskwatcher 1.7's.

Nothing is imported here: ``python -m taskwatcher.compat.v17`` would otherwise find
the module already imported and warn.
"""
