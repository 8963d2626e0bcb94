"""patter-dash adapter for the peer benchmark harness (``/work/shared/bench-peer``).

    cd /work/shared/bench-peer
    /tmp/benchvenv/bin/python run_bench.py --target /work/main/bench/peer_target.py ...

Server: real gunicorn with the shipped ``gunicorn.conf.py`` (gevent worker,
one worker, access log on as shipped), started as
``python -m gunicorn -c gunicorn.conf.py -b 127.0.0.1:<port> bench.preload_app:app``
from the repo root. ``bench.preload_app`` *is* ``wsgi:app`` plus an in-process
preload greenlet that reports the worker's RSS before/after (W6); with no
preload the adapter serves ``wsgi:app`` itself. pids = gunicorn master + worker.

W1: ``patter_dash.core.pipeline.Pipeline`` in this process (its event thread is an
OS thread here): each call's 8 SDK-shaped events (start, 6 turns with native
``TurnMetrics``, end with a native ``CallMetrics``) are fed with
``Pipeline.feed`` and ``inproc_ingest`` returns once the event thread has
applied all 8 (``counters["accepted"]``). ``BENCH_W1_METRICS=1`` attaches the
Prometheus metrics (:mod:`patter_dash.ops.metrics`) as an app does, to measure what
counting completions costs the event thread.

``extra`` (``run_bench.py --extra``): ``{"access_log": false}`` serves with
``bench/gunicorn_noaccesslog.conf.py`` (the shipped config minus the access
log); ``{"tz": "..."}`` sets TZ; ``{"app": "mod:app", "pythonpath": [dir]}``
serves another module (for trying a patch: it should import ``bench.preload_app``);
``{"env": {"PATTER_DASH_HEARTBEAT": "0.5"}}`` overrides settings (the smoke tests
in ``tests/test_bench_smoke.py`` shorten the soak's heartbeat this way).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from harness.adapter import ServerHandle, Target, free_port, wait_http

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)  # run.py runs a pinned snapshot copy (see BENCH_COMMIT there)
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
if REPO not in sys.path:  # W1 imports patter_dash and bench.shapes in the harness process
    sys.path.insert(0, REPO)


class _W1Store:
    """A started pipeline plus how many events it must have applied."""

    def __init__(self, max_calls: int) -> None:
        from patter_dash.core.pipeline import Pipeline

        self.pipeline = Pipeline(max_calls=max_calls, queue_size=1_000_000)
        if os.environ.get("BENCH_W1_METRICS") == "1":
            # As an app has them (PatterDashboard.init_app): the Prometheus metrics' watcher on the store.
            from patter_dash.ops.metrics import Metrics

            self.metrics = Metrics(self.pipeline)
        self.pipeline.ensure_started()
        self.expected = 0


class PatterDashTarget(Target):
    name = "patter-dash"
    health_path = "/api/v1/health"
    ingest_path = "/api/dashboard/ingest"  # Patter-compatible: same bodies as the peer
    sse_path = "/api/v1/events"
    sse_publish_events = ("call_start", "call_end")

    def export_paths(self) -> dict[str, str]:
        return {"csv": "/api/v1/export/csv", "json": "/api/v1/export/json"}

    # ------------------------------------------------------------------ W1
    def inproc_store(self, max_calls: int):
        return _W1Store(max_calls)

    def inproc_prepare(self, call):
        from bench.shapes import sdk_events

        return sdk_events(call)

    def inproc_ingest(self, store: _W1Store, prepared) -> int:
        p = store.pipeline
        feed = p.feed
        for etype, data in prepared:
            feed(etype, data)
        store.expected += len(prepared)
        counters = p.counters
        want = store.expected
        while counters["accepted"] + counters["rejected"] + counters["errors"] < want:
            time.sleep(0)  # releases the GIL to the event thread
        return len(prepared)

    def inproc_count(self, store: _W1Store) -> int:
        c = store.pipeline.counters
        if c["rejected"] or c["errors"]:
            raise RuntimeError(f"W1 events rejected/errored: {c}")
        return store.pipeline.store.sizes()["completed"]

    # --------------------------------------------------------------- server
    def start_server(self, *, max_calls, preload, seed, shape="ingest", extra=None) -> ServerHandle:
        extra = extra or {}
        port = free_port()
        status = f"/tmp/patterdash-bench-{port}.json"
        logpath = f"/tmp/patterdash-bench-{port}.log"
        for p in (status, status + ".tmp"):
            if os.path.exists(p):
                os.remove(p)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PATTER_DASH_", "BENCH_"))}
        env.update({
            "PATTER_DASH_MAX_CALLS": str(max_calls),
            "PATTER_DASH_QUEUE_SIZE": "1000000",
            "PATTER_DASH_MAX_SUBSCRIBERS": "1100",
            "PATTER_DASH_WORKER_CONNECTIONS": "2500",
            "PATTER_DASH_MAX_BODY": str(8 << 20),
            # The peer keeps nothing: compared like for like, memory only (bench/journal.py measures the file).
            "PATTER_DASH_DB": ":memory:",
            "PYTHONPATH": os.pathsep.join([REPO, PEER]),
        })
        if extra.get("tz"):
            env["TZ"] = extra["tz"]
        env.update({str(k): str(v) for k, v in (extra.get("env") or {}).items()})
        conf = "gunicorn.conf.py"
        if extra.get("access_log") is False:
            conf = os.path.join("bench", "gunicorn_noaccesslog.conf.py")
        if preload:
            env.update({"BENCH_PRELOAD": str(preload), "BENCH_SEED": str(seed), "BENCH_SHAPE": shape,
                        "BENCH_STATUS_FILE": status})
            appspec = "bench.preload_app:app"
        else:
            appspec = "wsgi:app"
        if extra.get("app"):  # experiments: a module that imports bench.preload_app (or wsgi) and patches
            appspec = extra["app"]
            env["PYTHONPATH"] = os.pathsep.join([env["PYTHONPATH"], *extra.get("pythonpath", [])])
        cmd = [sys.executable, "-m", "gunicorn", "-c", conf, "-b", f"127.0.0.1:{port}", appspec]
        log = open(logpath, "w")
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        try:
            wait_http("127.0.0.1", port, self.health_path, timeout=120, proc=proc)
            info: dict = {}
            if preload:
                deadline = time.time() + 1800
                while not os.path.exists(status):
                    if proc.poll() is not None:
                        raise RuntimeError(f"gunicorn exited rc={proc.returncode}; see {logpath}")
                    if time.time() > deadline:
                        raise TimeoutError("preload did not finish")
                    time.sleep(0.1)
                with open(status) as fh:
                    info = json.load(fh)
                if "error" in info:
                    raise RuntimeError(f"preload failed: {info['error']} (see {logpath})")
            health = _get_json(port, self.health_path)
            worker = health["pid"]
            if info and info.get("pid") != worker:
                raise RuntimeError(f"worker restarted during preload ({info.get('pid')} -> {worker}); see {logpath}")
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        info.update({"cmd": " ".join(cmd), "cwd": REPO, "log": logpath, "master_pid": proc.pid,
                     "worker_pid": worker, "health": health, **code_version()})
        return ServerHandle(proc=proc, host="127.0.0.1", port=port, pids=[proc.pid, worker], info=info)

    def stop_server(self, h: ServerHandle) -> None:
        if h.proc.poll() is None:
            h.proc.send_signal(signal.SIGINT)
            try:
                h.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait(timeout=5)
        worker = h.info.get("worker_pid")
        if worker:  # the master reaps it; make sure nothing outlives the run
            for _ in range(50):
                if not os.path.exists(f"/proc/{worker}") or _is_zombie(worker):
                    break
                time.sleep(0.1)
            else:
                try:
                    os.kill(worker, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def describe(self):
        out = {"name": self.name, "repo": REPO, **code_version()}
        from importlib.metadata import PackageNotFoundError, version

        for pkg in ("flask", "werkzeug", "gunicorn", "gevent", "greenlet"):
            try:
                out[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
        return out


def code_version() -> dict:
    """The code under test: the snapshot's BENCH_COMMIT file, else git in REPO."""
    marker = os.path.join(REPO, "BENCH_COMMIT")
    if os.path.exists(marker):
        with open(marker) as fh:
            return {"commit": fh.read().strip(), "dirty": False, "snapshot": REPO}
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        dirty = bool(subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "patter_dash", "wsgi.py",
                                     "gunicorn.conf.py", "templates"], capture_output=True, text=True).stdout.strip())
        return {"commit": commit, "dirty": dirty}
    except OSError:
        return {}


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def _get_json(port: int, path: str):
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return json.loads(r.read())
    finally:
        c.close()


TARGET = PatterDashTarget
