#!/usr/bin/env python3
"""Run the whole benchmark set: patter-dash vs the peer (Patter 0.7.0), same session.

``make bench`` runs ``.venv/bin/python bench/run.py``. This script only
orchestrates: the harness and the servers run in a separate venv
(``BENCH_VENV``, default ``/tmp/benchvenv``: getpatter 0.7.0 + uvicorn + httpx
+ this project's requirements), created on first use. Results (raw JSON) go to
``bench/results/``; ``bench/results/summary.md`` is the headline table and
``bench/results/compare.md`` the harness's full side-by-side.

Every step alternates the two targets (peer first, then patter-dash, per
size) so that both see the same machine conditions.

The code under test is pinned: patter-dash's HEAD commit is exported
(``git archive``) to ``/tmp/patter-dash-bench-<commit>/`` together with the
current ``bench/`` scripts, and every server and in-process run uses that
copy, so commits or edits made while the benchmark runs do not leak into it.
Uncommitted changes are therefore not measured (``--no-snapshot`` measures the
working tree instead).

    .venv/bin/python bench/run.py                 # everything (~35-40 min on 2 cores)
    .venv/bin/python bench/run.py --quick         # smoke: N=500, 1 short run each (~4 min)
    .venv/bin/python bench/run.py --steps w5,report
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
PEER = os.environ.get("BENCH_PEER_DIR", "/work/shared/bench-peer")
VENV = os.environ.get("BENCH_VENV", "/tmp/benchvenv")
PY = os.path.join(VENV, "bin", "python")
OURS = os.path.join(BENCH, "peer_target.py")
STEPS = ("w1", "sessions", "w5", "w6", "extras", "w3clean", "soak", "variant", "report")


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def sh(cmd: list[str], cwd: str = PEER) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, cwd=cwd, check=True, env=dict(os.environ, BENCH_PEER_DIR=PEER))


def ensure_venv() -> None:
    ok = os.path.exists(PY) and subprocess.run(
        [PY, "-c", "import getpatter, uvicorn, httpx, flask, gunicorn, gevent, flask_sock"],
        capture_output=True).returncode == 0
    if not ok:
        log(f"creating {VENV}")
        subprocess.run([sys.executable if not os.path.exists("/usr/bin/python3") else "python3", "-m", "venv", VENV],
                       check=True)
        subprocess.run([PY, "-m", "pip", "install", "-q", "getpatter==0.7.0", "uvicorn", "httpx",
                        "-r", os.path.join(REPO, "requirements.txt")], check=True)
    if shutil.which("wrk") is None:
        sys.exit("wrk is missing: apt-get install -y wrk (W3 uses it)")


def _drop_key(path: str, key: str) -> None:
    if os.path.exists(path):
        with open(path) as fh:
            d = json.load(fh)
        d.pop(key, None)
        d.get("meta", {}).pop(f"{key}_driver", None)
        with open(path, "w") as fh:
            json.dump(d, fh, indent=1)


def snapshot() -> str:
    """Export HEAD + the current bench/ scripts to a fresh directory; returns its path."""
    sha = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         check=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "patter_dash", "wsgi.py",
                            "gunicorn.conf.py", "templates"], capture_output=True, text=True).stdout.strip()
    if dirty:
        log(f"note: uncommitted changes in the working tree are NOT measured (benchmarking {sha}):\n{dirty}")
    snap = f"/tmp/patter-dash-bench-{sha}"
    if os.path.exists(snap):
        shutil.rmtree(snap)
    os.makedirs(snap)
    archive = subprocess.run(["git", "-C", REPO, "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", snap], input=archive, check=True)
    os.makedirs(os.path.join(snap, "bench"), exist_ok=True)
    for name in os.listdir(BENCH):
        if name.endswith(".py") or name == "README.md":
            shutil.copy2(os.path.join(BENCH, name), os.path.join(snap, "bench", name))
    with open(os.path.join(snap, "BENCH_COMMIT"), "w") as fh:
        fh.write(sha + "\n")
    log(f"benchmarking patter-dash {sha} from {snap}")
    return snap


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", default=",".join(STEPS), help=f"comma list of {', '.join(STEPS)}")
    ap.add_argument("--sizes", default="500,10000,100000")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--dur", type=float, default=5.0, help="seconds per W2/W3 run")
    ap.add_argument("--w1-runs", type=int, default=3)
    ap.add_argument("--w1-m", type=int, default=5000)
    ap.add_argument("--extras-n", type=int, default=100_000)
    ap.add_argument("--soak-seconds", type=float, default=60)
    ap.add_argument("--out-dir", default=os.path.join(BENCH, "results"))  # the real repo's bench/results
    ap.add_argument("--quick", action="store_true", help="smoke run: N=500, 1 short run each")
    ap.add_argument("--keep", action="store_true", help="add to existing results instead of starting afresh")
    ap.add_argument("--no-snapshot", action="store_true", help="measure the working tree as it is (not pinned)")
    args = ap.parse_args()
    global OURS
    bench = BENCH
    if not args.no_snapshot and set(args.steps.split(",")) - {"report"}:
        bench = os.path.join(snapshot(), "bench")
        OURS = os.path.join(bench, "peer_target.py")
    if args.quick:
        args.sizes, args.runs, args.dur, args.w1_runs, args.w1_m = "500", 1, 2.0, 1, 1000
        args.extras_n, args.soak_seconds = 2000, 10
    steps = [s for s in args.steps.split(",") if s]
    out = args.out_dir
    os.makedirs(out, exist_ok=True)
    files = {k: os.path.join(out, f"{k}.json") for k in ("peer", "ours", "peer-extras", "ours-extras", "soak",
                                                          "ours-noaccesslog", "peer-w3clean", "ours-w3clean")}
    ensure_venv()
    if not args.keep and set(steps) == set(STEPS):  # a full run starts afresh; partial runs merge
        for f in files.values():
            if os.path.exists(f):
                os.remove(f)
    t0 = time.time()
    run_meta = {"started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "argv": sys.argv, "steps": steps,
                "loadavg_at_start": open("/proc/loadavg").read().strip(), "bench_dir": bench}
    common = ["--runs", str(args.runs), "--dur", str(args.dur), "--w2b-dur", "2", "--seed", "1"]
    targets = (("patter", files["peer"]), (OURS, files["ours"]))
    if "w1" in steps:
        for tgt, f in targets:
            sh([PY, "run_bench.py", "--target", tgt, "--only", "w1", "--sizes", args.sizes,
                "--w1-runs", str(args.w1_runs), "--w1-m", str(args.w1_m), *common, "--out", f])
    if "sessions" in steps:
        for n in args.sizes.split(","):
            for tgt, f in targets:
                sh([PY, "run_bench.py", "--target", tgt, "--only", "sessions", "--sizes", n, *common, "--out", f])
    if "w5" in steps:
        for _tgt, f in targets:
            _drop_key(f, "w5")
        for r in range(args.runs):
            for S in ("100", "1000"):
                for tgt, f in targets:
                    sh([PY, os.path.join(bench, "w5.py"), "--target", tgt, "--S", S, "--modes", "paced,burst",
                        "--runs", "1", "--out", f])
    if "w6" in steps:
        w6n = "10000" if not args.quick else "500"
        for tgt, f in targets:
            sh([PY, "run_bench.py", "--target", tgt, "--only", "w6", "--w6-sizes", w6n, "--runs", str(args.runs),
                "--out", f])
    if "extras" in steps:
        sh([PY, os.path.join(bench, "extras.py"), "--target", "patter", "--n", str(args.extras_n), "--only", "pause",
            "--runs", str(args.runs), "--out", files["peer-extras"]])
        sh([PY, os.path.join(bench, "extras.py"), "--target", OURS, "--n", str(args.extras_n),
            "--runs", str(args.runs), "--dur", str(args.dur), "--out", files["ours-extras"]])
    if "w3clean" in steps:  # W3 at the largest N with a drained server before each endpoint
        big = args.sizes.split(",")[-1]
        for tgt, key in (("patter", "peer-w3clean"), (OURS, "ours-w3clean")):
            sh([PY, os.path.join(bench, "extras.py"), "--target", tgt, "--n", big, "--only", "w3clean",
                "--runs", "1", "--w3-dur", str(2 * args.dur), "--out", files[key]])
    if "soak" in steps:
        sh([PY, os.path.join(bench, "soak.py"), "--seconds", str(args.soak_seconds),
            "--n", "10000" if not args.quick else "1000", "--out", files["soak"]])
    if "variant" in steps:
        sh([PY, "run_bench.py", "--target", OURS, "--only", "sessions", "--sizes", "500", "--runs", str(args.runs),
            "--dur", str(args.dur), "--w2b-dur", "2", "--extra", '{"access_log": false}',
            "--out", files["ours-noaccesslog"]])
    run_meta.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), elapsed_s=round(time.time() - t0),
                    loadavg_at_end=open("/proc/loadavg").read().strip())
    history = []
    meta_path = os.path.join(out, "run-meta.json")
    if os.path.exists(meta_path) and not (set(steps) == set(STEPS) and not args.keep):
        with open(meta_path) as fh:
            history = json.load(fh)
    if set(steps) - {"report"}:
        with open(meta_path, "w") as fh:
            json.dump(history + [run_meta], fh, indent=1)
    if "report" in steps:
        with open(os.path.join(out, "compare.md"), "w") as fh:
            subprocess.run([PY, "compare.py", "--a", files["ours"], "--b", files["peer"]], cwd=PEER, check=True,
                           stdout=fh)
        sh([PY, os.path.join(bench, "report.py"), "--dir", out])
    log(f"done in {time.time() - t0:.0f} s; results in {out}")


if __name__ == "__main__":
    main()
