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


def open_sockets(pid: int) -> int:
    """Sockets the process holds: what a client that left would leak.

    Files are left out on purpose: the journal keeps a pooled reader and its
    checkpoint connection open once first used, which is not a leak.
    """
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed while listed
    return count
