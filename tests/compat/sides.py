"""Running the same taskwatcher 1.7 command line against 1.7 and against ours."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any


class Side:
    """One taskwatcher (1.7's or ours) run as ``python -m taskwatcher.X`` in its own folder."""

    def __init__(self, name: str, python: Path, cwd: Path, env: dict[str, str]) -> None:
        self.name, self.python, self.cwd, self.env = name, python, cwd, env
        cwd.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"Side({self.name})"

    def argv(self, module: str, *args: str) -> list[str]:
        return [str(self.python), "-m", f"taskwatcher.{module}", *args]

    def run(self, module: str, *args: str, timeout: float = 30, **kw: Any) -> subprocess.CompletedProcess:
        kw.setdefault("cwd", self.cwd)
        return subprocess.run(
            self.argv(module, *args), env=self.env, capture_output=True, text=True, timeout=timeout, **kw
        )

    def popen(self, module: str, *args: str, **kw: Any) -> subprocess.Popen:
        kw.setdefault("cwd", self.cwd)
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        return subprocess.Popen(self.argv(module, *args), env=self.env, text=True, **kw)

    @staticmethod
    def run_together(
        work: list[tuple[Side, list[tuple[str, ...]]]], timeout: float = 30
    ) -> list[list[subprocess.CompletedProcess]]:
        """Several command lines on several sides, all at once: for lines that do not depend
        on each other. Their results, side by side and line by line, in order."""
        started = [[(side, line, side.popen(*line)) for line in lines] for side, lines in work]
        results = []
        for procs in started:
            done = []
            for side, line, p in procs:
                out, err = p.communicate(timeout=timeout)
                done.append(subprocess.CompletedProcess(side.argv(*line), p.returncode, out, err))
            results.append(done)
        return results


def assert_nothing_written_in(folder: Path, *allowed: str) -> None:
    extra = sorted(p.name for p in folder.iterdir() if p.name not in allowed)
    assert extra == [], f"written in the current folder: {extra}"
