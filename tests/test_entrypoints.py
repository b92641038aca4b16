"""Every module of the package run with ``python -m`` either does its job or says in one
line that it is not a command (exit 2): none exits 0 having done nothing (taskwatcher
1.x's sites run ``python -m taskwatcher.control`` and trust its exit status).

The modules are found by walking the package, so a new module without the guard
(``entrypoints.not_a_command`` at its end) fails here.
"""

from __future__ import annotations

import pkgutil
import subprocess

import taskwatcher
from conftest import TW

# The modules that are commands, and what each says when run with no arguments (a usage error).
COMMANDS = {
    "taskwatcher.__main__": "usage: taskwatcher",
    "taskwatcher.cli": "usage: taskwatcher",
    "taskwatcher.control": "usage: control.py",  # taskwatcher 1.7's command lines
    "taskwatcher.launch": "usage: launch.py",
    "taskwatcher.parse": "usage: parse.py",
}


def all_modules() -> list[str]:
    found = [m.name for m in pkgutil.walk_packages(taskwatcher.__path__, "taskwatcher.")]
    return sorted({*found, "taskwatcher.__main__"})


def test_every_module_does_its_job_or_says_it_is_not_a_command(env, workdir):
    modules = all_modules()
    assert {"taskwatcher.store", "taskwatcher.compat", "taskwatcher.compat.v17"} <= set(modules)
    assert set(COMMANDS) <= set(modules)
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    procs = {m: subprocess.Popen([*TW[:-1], m], env=env, cwd=workdir, **pipes) for m in modules}
    for module, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, f"python -m {module} exited {proc.returncode}: {err}"
        assert out == "", module
        if module in COMMANDS:
            assert err.startswith(COMMANDS[module]), (module, err)
        else:
            assert err.splitlines() == [err.strip()] and "Traceback" not in err, (module, err)
            name = module.removesuffix(".__main__")  # a package's __main__ speaks for the package
            assert err.startswith(f"{name} is not a command (the commands: python -m taskwatcher"), err
    assert list(workdir.iterdir()) == []


def test_with_arguments_a_module_that_is_not_a_command_still_refuses(env, workdir):
    proc = subprocess.run([*TW[:-1], "taskwatcher.store", "--db", "x.db", "--list"], env=env, cwd=workdir,
                          capture_output=True, text=True, timeout=30)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("taskwatcher.store is not a command")
    assert list(workdir.iterdir()) == []
