"""Real small and read-only file systems for fault tests: tmpfs mounts (the tests run as root)."""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True)


@contextmanager
def tmpfs(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``; a test that cannot mount one FAILS (it must not pass untested)."""
    where.mkdir(parents=True, exist_ok=True)
    mounted = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(where))
    if mounted.returncode != 0:
        pytest.fail(
            f"cannot mount a tmpfs at {where} ({mounted.stderr.strip() or mounted.returncode}): this test needs a real "
            "small file system, so it runs as root (or with CAP_SYS_ADMIN); it is not skipped, because then "
            "disk-full and read-only handling would ship untested",
            pytrace=False,
        )
    try:
        yield where
    finally:
        if _run("umount", str(where)).returncode != 0:
            _run("umount", "-l", str(where))  # a server still holds files there: detach it anyway


def remount(where: Path, mode: str) -> None:
    """``mode``: "ro" or "rw". A file system holding files open for writing cannot go read-only (EBUSY)."""
    done = _run("mount", "-o", f"remount,{mode}", str(where))
    assert done.returncode == 0, f"remount,{mode} {where}: {done.stderr}"


def fill(where: Path) -> Path:
    """Take every free byte of the file system holding ``where`` with one file; delete it to give the space back."""
    filler = where / "filler"
    with open(filler, "wb", buffering=0) as out:  # unbuffered: nothing left over to fail again at close
        for size in (1 << 20, 64 << 10, 4 << 10):
            chunk = b"\1" * size
            while True:
                try:
                    out.write(chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    st = os.statvfs(where)
    assert st.f_bavail == 0, f"{where} still has {st.f_bavail} free blocks"
    return filler
