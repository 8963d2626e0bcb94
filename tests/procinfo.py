"""/proc readings of a server process (Linux): memory and open file descriptors."""

from __future__ import annotations

import os


def status(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/PID/status, in bytes (VmRSS, VmHWM, ...)."""
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(field)


def reset_peak(pid: int) -> None:
    with open(f"/proc/{pid}/clear_refs", "w") as fh:
        fh.write("5")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))
