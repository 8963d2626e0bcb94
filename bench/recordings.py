#!/usr/bin/env python3
"""Recordings (issue 14, parts 3 and 4): peaks and quality time for a long recording, memory under 20 Range streams.

Makes a ``--minutes`` long stereo recording as Patter writes it (16 kHz PCM16, left
the caller, right the agent): 10 s of real espeak-ng speech placed with sox
(tests/speech.py), repeated. Then:

* **in process**: :func:`compute_peaks` and :func:`speech.analyse` on it, each
  ``--repeat`` times (best and worst; the file is in the page cache after the first);
* **through HTTP**, one real server (``python -m gunicorn -c gunicorn.conf.py wsgi:app``,
  the shipped gevent worker) with the recording under ``PATTER_DASH_RECORDINGS_DIRS``:
  the first ``.../recording/peaks`` (computed) and the second (cached), the first
  ``.../recording/quality`` and the second;
* **memory**: ``--streams`` clients each reading the recording with a ``Range`` from its
  own offset, slowly (``--rate`` bytes/s each), for ``--stream-seconds``: the worker's
  RSS before and its peak meanwhile (sampled from /proc), and the longest
  ``/api/v1/health`` answer meanwhile.

    .venv/bin/python bench/recordings.py --out bench/results/recordings-10min.json
    .venv/bin/python bench/recordings.py --minutes 0.5 --streams 3 --stream-seconds 1 --repeat 1   # smoke

Needs espeak-ng and sox (make system-deps).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from follow import free_port, get_json, start_server, stop_server, write_result  # noqa: E402

from patter_dash.core import speech  # noqa: E402
from patter_dash.core.recordings import compute_peaks, read_header  # noqa: E402
from tests.speech import make_conversation  # noqa: E402


def make_recording(folder: Path, minutes: float) -> Path:
    clip = make_conversation(folder / "clip.wav", [(0.0, 1.5), (5.0, 6.0), (7.5, 8.2)], [(1.2, 3.0), (6.3, 8.5)], 10.0,
                             noise=0.01)
    out = folder / "long.wav"
    repeats = max(0, round(minutes * 6) - 1)
    subprocess.run(["sox", str(clip), str(out), "repeat", str(repeats)], check=True)
    return out


def timed(fn, path: Path, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        fd = os.open(path, os.O_RDONLY)
        try:
            info = read_header(os.pread(fd, 65536, 0), os.fstat(fd).st_size)
            started = time.perf_counter()
            fn(fd, info)
            times.append(round(time.perf_counter() - started, 3))
        finally:
            os.close(fd)
    return times


def post(port: int, events: list[dict]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("POST", "/api/v1/ingest", json.dumps({"events": events}), {"Content-Type": "application/json"})
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status not in (200, 202):
        raise SystemExit(f"ingest answered {response.status}")


def get_timed(port: int, path: str) -> tuple[float, dict]:
    started = time.perf_counter()
    body = get_json(port, path)
    return round(time.perf_counter() - started, 3), body


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def stream(port: int, offset: int, rate: int, until: float, errors: list[str]) -> None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/api/v1/calls/bench-1/recording", headers={"Range": f"bytes={offset}-"})
        response = conn.getresponse()
        if response.status != 206:
            errors.append(f"status {response.status}")
            return
        while time.monotonic() < until:
            if not response.read(max(1, rate // 10)):
                break
            time.sleep(0.1)
        conn.close()  # leaves mid-file, as a listener closing the drawer
    except OSError as exc:
        errors.append(str(exc))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--streams", type=int, default=20)
    parser.add_argument("--rate", type=int, default=64_000, help="bytes/s each stream reads (Patter's WAV: 64,000)")
    parser.add_argument("--stream-seconds", type=float, default=10.0)
    parser.add_argument("--out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pd-rec-") as work:
        folder = Path(work)
        root = folder / "recordings"
        root.mkdir()
        path = make_recording(folder, args.minutes)
        os.replace(path, root / "bench-1.wav")
        path = root / "bench-1.wav"
        result: dict = {"minutes": args.minutes, "bytes": path.stat().st_size, "cpus": os.cpu_count()}
        result["peaks_seconds"] = timed(compute_peaks, path, args.repeat)
        result["quality_seconds"] = timed(speech.analyse, path, args.repeat)
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PATTER_DASH_")}
        env.update(PATTER_DASH_DATA_DIR=str(folder / "data"), PATTER_DASH_RECORDINGS_DIRS=str(root),
                   PATTER_DASH_RETENTION_DAYS="0",
                   # gevent reports any stretch over 0.5 s the loop was held (counted below as loop_blocked_reports).
                   GEVENT_MONITOR_THREAD_ENABLE="true", GEVENT_MAX_BLOCKING_TIME="0.5")
        proc = start_server(port, env, str(folder / "gunicorn.log"))
        try:
            started = time.time() - args.minutes * 60 - 5
            post(port, [{"type": "call_start", "data": {"call_id": "bench-1", "started_at": started}},
                        {"type": "call_end", "data": {"call_id": "bench-1", "ended_at": started + args.minutes * 60,
                                                      "recording_path": "bench-1.wav"}}])
            time.sleep(0.5)
            pid = get_json(port, "/api/v1/health")["pid"]
            first, _ = get_timed(port, "/api/v1/calls/bench-1/recording/quality")
            again, body = get_timed(port, "/api/v1/calls/bench-1/recording/quality")
            result["http_quality_seconds"] = {"first": first, "cached": again}
            result["quality"] = body.get("data")
            first, _ = get_timed(port, "/api/v1/calls/bench-1/recording/peaks")
            again, _ = get_timed(port, "/api/v1/calls/bench-1/recording/peaks")
            result["http_peaks_seconds"] = {"first": first, "cached": again}
            before = rss_kib(pid)
            errors: list[str] = []
            until = time.monotonic() + args.stream_seconds
            size = path.stat().st_size
            threads = [threading.Thread(target=stream, args=(port, i * size // (args.streams + 1), args.rate, until, errors))
                       for i in range(args.streams)]
            for t in threads:
                t.start()
            peak, slowest = before, 0.0
            while any(t.is_alive() for t in threads):
                peak = max(peak, rss_kib(pid))
                took, _ = get_timed(port, "/api/v1/health")
                slowest = max(slowest, took)
                time.sleep(0.1)
            for t in threads:
                t.join()
            result["streams"] = {"count": args.streams, "seconds": args.stream_seconds, "rate": args.rate,
                                 "rss_before_mib": round(before / 1024, 1), "rss_peak_mib": round(peak / 1024, 1),
                                 "slowest_health_seconds": slowest, "errors": errors}
        finally:
            stop_server(proc)
        blocked = [line for line in (folder / "gunicorn.log").read_text(errors="replace").splitlines() if "blocked" in line.lower()]
        result["loop_blocked_reports"] = len(blocked)
    write_result(result, args.out)


if __name__ == "__main__":
    main()
