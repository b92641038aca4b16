"""A schema-driven fuzz of the OpenAPI document (schemathesis) against a real server: no
request it makes gets a 5xx. Small, to stay fast: every operation but the endless event stream."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

TOKEN = "fuzz-token-0123456789abcdef"


def test_no_generated_request_gets_a_server_error(tw, serve, tasks, tmp_path):
    tw.run("launch", "--name", "finished", "true", check=True)
    tasks.start("running")
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    server = serve("--token-file", str(token), token=TOKEN)
    tool = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert tool, "schemathesis is in the test extra"
    cmd = [tool, "run", f"{server.url}/api/v1/openapi.json", "--checks", "not_a_server_error",
           "--max-examples", "12", "--exclude-path", "/api/v1/events", "--generation-deterministic",
           "--phases", "examples,fuzzing", "--header", f"Authorization: Bearer {TOKEN}",
           "--header", f"Origin: {server.url}", "--request-timeout", "20"]  # fmt: skip
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=240, env=tw.env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "Tested: 8" in done.stdout
    assert " passed" in done.stdout and "failed" not in done.stdout.split("Test cases:")[-1]
