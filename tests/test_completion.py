"""Shell completion: `taskwatcher completion bash|zsh` prints a script made from the parser."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from conftest import TW


def complete(tw, *words: str) -> list[str]:
    script = tw.run("completion", "bash", check=True).stdout
    line = " ".join(words)
    probe = (
        f'{script}\nCOMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; _taskwatcher; echo "${{COMPREPLY[@]}}"'
    )
    return subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash here")
def test_bash_completes_subcommands_and_their_options(tw):
    assert complete(tw, "taskwatcher", "co") == ["control", "completion"]
    assert complete(tw, "taskwatcher", "control", "--hi") == ["--history"]
    assert "--feedpath" in complete(tw, "taskwatcher", "launch", "--")
    assert complete(tw, "taskwatcher", "launch", "--hi") == []


def test_zsh_script_uses_bash_completion(tw):
    script = tw.run("completion", "zsh", check=True).stdout
    assert script.startswith("autoload -U +X bashcompinit && bashcompinit\n")
    assert "complete -o default -F _taskwatcher taskwatcher" in script


def test_completion_for_another_shell_is_a_usage_error(tw):
    proc = subprocess.run([*TW, "completion", "fish"], env=tw.env, capture_output=True, text=True)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
