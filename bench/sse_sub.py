"""SSE subscriber swarm (run as its own process) -- bench/w5.py's copy.

Copied from the peer harness (``harness/sse_sub.py``) with one change: a
message block is an *event* only if it has a ``data:`` field, as the SSE spec
dispatches (blocks of only comments or ``retry:``/``id:`` fields dispatch
nothing). The harness original counts any block that does not start with
``:``, so a stream that opens with ``retry: 2000`` (patter-dash does, the peer
does not) is charged one phantom event per subscriber, which ends each
subscriber one real event early and reports it as lost.

Opens S concurrent HTTP/1.1 connections to an SSE endpoint, signals readiness
once every response's headers arrived (the server has subscribed them), then
records (conn, event_type, call_id, receive_time_ns) for every message until
each connection has seen ``--expect`` events, ``--stop-file`` appears, or
``--timeout`` elapses. Receive time is ``time.monotonic_ns()`` (CLOCK_MONOTONIC,
comparable across processes on the same host).

Output JSON: {connected, failed, dropped (closed by server early), per_conn
counts, records: [[conn, type, call_id, t_ns], ...]}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness.proc import raise_nofile  # noqa: E402

CID_RE = re.compile(rb'"call_id"\s*:\s*"([^"]+)"')


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/api/dashboard/events")
    ap.add_argument("-S", type=int, required=True)
    ap.add_argument("--expect", type=int, required=True, help="events per connection to wait for")
    ap.add_argument("--ready-file", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--stop-file", required=True)
    ap.add_argument("--timeout", type=float, default=120.0)
    args = ap.parse_args()
    raise_nofile()

    records: list[tuple[int, str, str, int]] = []
    counts = [0] * args.S
    state = ["pending"] * args.S  # pending|open|done|dropped|failed
    ready = asyncio.Event()
    opened = 0
    finished = asyncio.Event()
    req = (f"GET {args.path} HTTP/1.1\r\nHost: {args.host}\r\nAccept: text/event-stream\r\n"
           f"Connection: keep-alive\r\n\r\n").encode()
    deadline = time.monotonic() + args.timeout

    def check_done():
        if all(s in ("done", "dropped", "failed") for s in state):
            finished.set()

    async def sub(i: int):
        nonlocal opened
        try:
            reader, writer = await asyncio.open_connection(args.host, args.port, limit=1 << 22)
            writer.write(req)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise ConnectionError(head[:40])
        except Exception:
            state[i] = "failed"
            opened += 1
            if opened == args.S:
                ready.set()
            check_done()
            return
        state[i] = "open"
        opened += 1
        if opened == args.S:
            ready.set()
        buf = b""
        try:
            while True:
                size_line = await reader.readuntil(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:  # server ended the stream
                    state[i] = "dropped" if counts[i] < args.expect else "done"
                    break
                chunk = await reader.readexactly(size + 2)
                t = time.monotonic_ns()
                buf += chunk[:-2]
                while b"\n\n" in buf:
                    msg, buf = buf.split(b"\n\n", 1)
                    if msg.startswith(b":"):
                        continue  # keepalive comment
                    ev = b"message"
                    data = None
                    for line in msg.split(b"\n"):
                        if line.startswith(b"event:"):
                            ev = line[6:].strip()
                        elif line.startswith(b"data:"):
                            data = line[5:] if data is None else data + b"\n" + line[5:]
                    if data is None:
                        continue  # no data field: the spec dispatches no event
                    m = CID_RE.search(data, 0, 400) or CID_RE.search(data)
                    records.append((i, ev.decode(), m.group(1).decode() if m else "", t))
                    counts[i] += 1
                if counts[i] >= args.expect:
                    state[i] = "done"
                    check_done()
                    # keep the connection open until everyone is done
                    await finished.wait()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            state[i] = "dropped" if counts[i] < args.expect else "done"
        except asyncio.CancelledError:
            pass
        finally:
            check_done()
            try:
                writer.close()
            except Exception:
                pass

    tasks = []
    for i in range(args.S):
        tasks.append(asyncio.create_task(sub(i)))
        if i % 100 == 99:
            await asyncio.sleep(0.01)
    try:
        await asyncio.wait_for(ready.wait(), timeout=60)
    except asyncio.TimeoutError:
        pass
    n_open = sum(1 for s in state if s == "open")
    with open(args.ready_file + ".tmp", "w") as fh:
        json.dump({"open": n_open, "failed": state.count("failed")}, fh)
    os.replace(args.ready_file + ".tmp", args.ready_file)

    while not finished.is_set() and time.monotonic() < deadline and not os.path.exists(args.stop_file):
        try:
            await asyncio.wait_for(finished.wait(), timeout=0.2)
        except asyncio.TimeoutError:
            pass
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out = {
        "S": args.S,
        "connected": n_open,
        "failed": state.count("failed"),
        "dropped": state.count("dropped"),
        "incomplete_open": state.count("open"),
        "done": state.count("done"),
        "counts_min": min(counts) if counts else 0,
        "counts_max": max(counts) if counts else 0,
        "client_cpu_s": sum(os.times()[:2]),
        "records": records,
    }
    with open(args.out + ".tmp", "w") as fh:
        json.dump(out, fh)
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    try:
        import uvloop  # type: ignore
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
