"""The harness imports and answers --help (not a benchmark; not run by scripts/test).

.venv/bin/python -m pytest -p no:cacheprovider benchmarks/test_smoke.py
"""

import os
import subprocess
import sys

HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "harness.py")


def test_the_harness_answers_help() -> None:
    r = subprocess.run([sys.executable, HARNESS, "--help"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "--quick" in r.stdout
