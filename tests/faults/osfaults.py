"""Real faults from the operating system, for the fault tests: read-only files and folders,
full and read-only filesystems, a file size limit, another user.

The tests run as root, and root ignores permission bits: a file with mode 0444, or a
folder with mode 0000, is still writable by root. So each fault is made with what root
cannot ignore:

- a read-only file or folder: ``chattr +i`` (immutable; even root gets EPERM);
- a read-only filesystem: a tmpfs mounted, filled, then remounted ``ro`` (EROFS);
- a full disk: a small tmpfs filled to its last block (ENOSPC);
- a file size limit: ``RLIMIT_FSIZE`` in the child (Python ignores SIGXFSZ, so writes
  past the limit fail with EFBIG);
- "no permission": the CLI run as user ``nobody`` (``subprocess``'s ``user=``), with a
  Python interpreter that ``nobody`` may execute.

Each helper says why it cannot work here (``skip_reason``); a test then skips with that
reason, and only then.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

SRC = str(Path(__file__).parents[2] / "src")
NOBODY = "nobody"


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True)


@functools.cache
def chattr_problem() -> str | None:
    """None if ``chattr +i`` works on files under /tmp, else why not."""
    if os.geteuid() != 0:
        return "chattr +i needs root"
    if not shutil.which("chattr"):
        return "chattr is not installed"
    folder = tempfile.mkdtemp(prefix="tw-chattr-")
    probe = os.path.join(folder, "probe")
    Path(probe).write_text("x")
    try:
        done = _run("chattr", "+i", probe)
        if done.returncode != 0:
            return f"chattr +i fails here: {done.stderr.strip()}"
        return None
    finally:
        _run("chattr", "-i", probe)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def immutable(*paths: Path) -> Iterator[None]:
    """The paths are immutable (chattr +i) inside the block: not even root may change them."""
    done: list[Path] = []
    try:
        for p in paths:
            subprocess.run(["chattr", "+i", str(p)], check=True, capture_output=True)
            done.append(p)
        yield
    finally:
        for p in reversed(done):
            subprocess.run(["chattr", "-i", str(p)], capture_output=True)


@functools.cache
def mount_problem() -> str | None:
    """None if a tmpfs can be mounted here, else why not."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    folder = tempfile.mkdtemp(prefix="tw-mount-")
    try:
        done = _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder)
        if done.returncode != 0:
            return f"cannot mount a tmpfs here: {done.stderr.strip()}"
        _run("umount", folder)
        return None
    finally:
        os.rmdir(folder)


@contextlib.contextmanager
def tmpfs(folder: Path, size: str = "512k") -> Iterator[Path]:
    """A small tmpfs mounted on ``folder`` (its content is copied in) for the block."""
    saved = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=755", "tmpfs", str(folder)],
                   check=True, capture_output=True)  # fmt: skip
    try:
        for name, data in saved.items():
            (folder / name).write_bytes(data)
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        # the folder shows again what it held before the mount


def fill(folder: Path) -> int:
    """Fill the filesystem of ``folder`` to its last block; the bytes written."""
    written = 0
    block = b"\0" * 4096
    with open(folder / "filler", "wb", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                written += f.write(block)
        with contextlib.suppress(OSError):  # then the last partial block, byte by byte
            while f.write(b"\0"):
                written += 1
    return written


def remount_read_only(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True, capture_output=True)


def file_size_limit(limit: int):  # type: ignore[no-untyped-def]
    """A ``preexec_fn``: the child may not write at or past ``limit`` bytes of any file."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@functools.cache
def nobody_python() -> tuple[str | None, str]:
    """An interpreter that user ``nobody`` can run taskwatcher with, or (None, why not)."""
    if os.geteuid() != 0:
        return None, "running as another user needs root"
    try:
        pwd.getpwnam(NOBODY)
    except KeyError:
        return None, "there is no user nobody"
    tried = []
    for python in dict.fromkeys([sys.executable, "/usr/bin/python3"]):
        if not os.path.exists(python):
            continue
        try:
            probe = subprocess.run(
                [python, "-c", "import sys, taskwatcher; assert sys.version_info >= (3, 10)"],
                user=NOBODY, group="nogroup", extra_groups=[], cwd="/", capture_output=True,
                env={"PYTHONPATH": SRC, "PATH": os.environ.get("PATH", "")},
            )  # fmt: skip
            if probe.returncode == 0:
                return python, ""
        except OSError:  # not executable by nobody (under /root, say)
            pass
        tried.append(python)
    return None, f"user nobody cannot run taskwatcher with {', '.join(tried)} (from {SRC})"


def as_nobody() -> dict[str, object]:
    """``subprocess`` keywords that run the child as nobody."""
    return {"user": NOBODY, "group": "nogroup", "extra_groups": []}


def give_to_nobody(*paths: Path) -> None:
    uid, gid = pwd.getpwnam(NOBODY).pw_uid, pwd.getpwnam(NOBODY).pw_gid
    for p in paths:
        os.chown(p, uid, gid)
