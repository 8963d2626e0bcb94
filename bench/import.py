#!/usr/bin/env python3
"""Importing Patter's call logs (issue 14, part 1): calls per second of ``patter-dash import`` into SQLite.

Builds a log root of ``--calls`` finished calls spread over the last ``--days`` UTC
days, as bench/follow.py does (one call written by getpatter's real ``CallLogger``:
``metadata.json``, ``transcript.jsonl`` with three turns; copied per call with its own
``call_id`` and start), then runs ``python -m patter_dash.run.cli import ROOT --db FILE``
(the command a user runs) and times it: calls per second, and the import run again
over the same root (everything already present: nothing imported twice).

    .venv/bin/python bench/import.py                 # 10,000 calls
    .venv/bin/python bench/import.py --full --out bench/results/import-100k.json   # 100,000 calls
    .venv/bin/python bench/import.py --fast          # 200 calls: the smoke test (tests/test_bench_smoke.py)

Needs the repo's requirements and getpatter (requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from follow import REPO, build_root, write_result  # noqa: E402


def run_import(root: str, db: str) -> tuple[float, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PATTER_DASH_")}
    env["PATTER_DASH_DATA_DIR"] = os.path.dirname(db)
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "patter_dash.run.cli", "import", root, "--db", db], cwd=REPO, env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"import exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=10_000, help="finished calls on disk")
    parser.add_argument("--full", action="store_true", help="100,000 calls")
    parser.add_argument("--fast", action="store_true", help="200 calls (smoke)")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--out", help="write the result (JSON) here")
    args = parser.parse_args()
    calls = 100_000 if args.full else 200 if args.fast else args.calls
    with tempfile.TemporaryDirectory(prefix="pd-import-") as work:
        root = os.path.join(work, "logs")
        os.makedirs(root)
        built = build_root(root, calls, args.days)
        db = os.path.join(work, "data", "history.db")
        os.makedirs(os.path.dirname(db))
        first, report = run_import(root, db)
        again, report_again = run_import(root, db)
        result = {
            "calls": calls,
            "build_seconds": round(built, 2),
            "import_seconds": round(first, 2),
            "calls_per_second": round(calls / first, 1),
            "reimport_seconds": round(again, 2),
            "reimport_calls_per_second": round(calls / again, 1),
            "db_bytes": os.path.getsize(db),
            "summary": [line for line in report.splitlines() if line.strip()][-6:],
            "summary_again": [line for line in report_again.splitlines() if line.strip()][-6:],
            "python": sys.version.split()[0],
            "cpus": os.cpu_count(),
        }
    write_result(result, args.out)


if __name__ == "__main__":
    main()
