"""The benchmarks in bench/ still run: every script once, at a toy size, in the normal suite.

A tidy-up once removed a store method that ``bench/preload_app.py`` called, and the benchmark
adapter stayed broken until the next benchmark run. Here each script runs as the reported
benchmark runs it (the harness's ``run_bench.py``, ``bench/w5.py``, ``bench/extras.py``, ``bench/ingest.py``,
``bench/soak.py``, ``bench/active_bounds.py``, ``bench/follow.py``, ``bench/experiments/*``), against real gunicorn +
gevent servers, with the harness copy in ``tests/fixtures/bench-peer`` (the shared one may be
absent on a fresh clone). The figures are not checked, only that every workload ran and the
server answered it without errors; the benchmark itself reports the figures.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PEER = ROOT / "tests" / "fixtures" / "bench-peer"
TARGET = str(BENCH / "peer_target.py")


def run(args: list[str], cwd: Path = ROOT, timeout: float = 120) -> str:
    """Run a bench script with this venv's Python as the benchmark does; its output, or fail with its log."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PATTER_DASH_", "BENCH_"))}
    env["BENCH_PEER_DIR"] = str(PEER)
    proc = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args[0]} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def harness(tmp_path: Path, *args: str) -> dict[str, Any]:
    out = tmp_path / "harness.json"
    run(["run_bench.py", "--target", TARGET, *args, "--seed", "1", "--out", str(out)], cwd=PEER)
    return json.loads(out.read_text())


def no_errors(rows: list[dict[str, Any]], *keys: str) -> None:
    assert rows, "the workload produced no runs"
    for row in rows:
        assert row["requests"] > 0, row
        assert all(row[k] == 0 for k in keys), row


# ------------------------------------------------------------ the harness, through bench/peer_target.py


def test_harness_w1_and_w6_run_on_the_adapter_in_both_shapes(tmp_path: Path) -> None:
    res = harness(tmp_path, "--only", "w1,w6", "--sizes", "20", "--w1-runs", "1", "--w1-m", "20",
                  "--w6-sizes", "20", "--runs", "1")
    w1 = res["w1"]["20"]
    # 8 SDK-shaped events a call (start, 6 turns with native TurnMetrics, end with CallMetrics), all applied
    assert w1["runs"][0]["events"] == 160 and w1["runs"][0]["events_per_s"] > 0
    assert w1["stored_after"] == 20
    w6 = res["w6"]["20"]
    assert [w6[shape][0]["shape"] for shape in ("ingest", "sdk")] == ["ingest", "sdk"]
    assert all(w6[shape][0]["n"] == 20 for shape in ("ingest", "sdk"))
    assert w6["http-ingest"][0]["requests"] == 40 and w6["http-ingest"][0]["errors"] == 0


def test_harness_sessions_run_every_read_export_and_ingest_workload(tmp_path: Path) -> None:
    n = 30
    res = harness(tmp_path, "--only", "sessions", "--sizes", str(n), "--runs", "1", "--dur", "1",
                  "--w2b-dur", "1", "--w2-conc", "16")
    info = res["server_info"][str(n)]
    assert info["stored"] == n and info["counters"]["rejected"] == info["counters"]["errors"] == 0
    # the store's aggregates against the generator's ground truth, before any write
    assert res["correctness"][str(n)]["findings"] == []
    w3 = res["w3"][str(n)]
    assert {k: v["status"] for k, v in w3["response"].items()} == dict.fromkeys(w3["paths"], 200)
    for rows in w3["runs"].values():  # wrk, one run per endpoint
        no_errors(rows, "errors")
    w4 = res["w4"][str(n)]
    assert [(fmt, w4[fmt][0]["status"], w4[fmt][0]["rows"]) for fmt in ("csv", "json")] == [
        ("csv", 200, n), ("json", 200, n)]
    no_errors(res["w2"][str(n)]["c16"], "non2xx", "exc")
    no_errors(res["w2b"][str(n)]["c1"], "non2xx", "exc")
    assert res["w2"][str(n)]["after"]["status"] == 200
    assert all(case["status"] < 500 for case in res["edges"]), res["edges"]  # bad bodies: a 4xx, never a 500


# --------------------------------------------------------------------------------- bench/*.py


def test_w5_fans_out_every_event_to_every_subscriber_paced_and_burst(tmp_path: Path) -> None:
    out = tmp_path / "w5.json"
    run([str(BENCH / "w5.py"), "--target", TARGET, "--S", "5", "--modes", "paced,burst", "--runs", "1",
         "--n", "20", "--lifecycles", "5", "--rate", "50", "--out", str(out)])
    w5 = json.loads(out.read_text())["w5"]
    assert sorted(w5) == ["S5_burst", "S5_paced"]
    for (row,) in w5.values():
        assert row["connected"] == 5 and row["events_published"] == 10
        assert row["events_received"] == 50 and row["events_lost"] == 0 and row["subscribers_dropped"] == 0
        assert set(row["post_statuses"]) == {"202"}


def test_extras_pause_list_full_batched_and_w3clean(tmp_path: Path) -> None:
    out = tmp_path / "extras.json"
    run([str(BENCH / "extras.py"), "--target", TARGET, "--n", "50", "--runs", "1", "--dur", "1", "--w3-dur", "1",
         "--batch-sizes", "1,200", "--batch-conc", "2", "--only", "pause,list_full,batched,w3clean",
         "--out", str(out)])
    res = json.loads(out.read_text())
    assert len(res["pause"]) == 5 and all(p["slow_status"] == 200 and p["slow_bytes"] > 0 for p in res["pause"])
    no_errors(res["list_full"], "errors")
    assert sorted(res["batched"]) == ["events1_c2", "events200_c2"]
    for rows in res["batched"].values():
        no_errors(rows, "non2xx", "exc")
    for rows in res["w3clean"]["runs"].values():
        no_errors(rows, "errors")


def test_ingest_write_path_figures_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "ingest.json"
    run([str(BENCH / "ingest.py"), "--target", TARGET, "--n", "200", "--dur", "1", "--out", str(out)], timeout=180)
    res = json.loads(out.read_text())
    for conc in ("c1", "c16"):
        no_errors(res["w2"][conc], "non2xx", "exc")
        floor = res["floor"][conc][0]
        assert floor["req_per_s"] > 0 and floor["non2xx"] == floor["exc"] == 0
    for rows in res["batched"].values():
        no_errors(rows, "non2xx", "exc")
    assert all(v["events"] > 0 and v["bad"] == 0 for v in res["ws"].values())
    assert res["gcwindow"][0]["wrk"]["errors"] == 0 and res["gcwindow"][0]["collect"]["seconds"] >= 0
    assert res["loadpause"]["calls"] == 200 and res["loadpause"]["non2xx"] == 0 and res["loadpause"]["probes"] > 0


# Issue 12's figures: ingest with the journal on / off / the peer (in-process, single-event HTTP, batch),
# restart-to-ready, disk bytes a call, the reads at 1M on disk, the health pause under ingest and the purge.
JOURNAL_FIGURES = (
    "ingest.w1.on", "ingest.w1.off", "ingest.w1.peer", "ingest.w1_stream.on", "ingest.w1_stream.off",
    "ingest.w2_c1.on", "ingest.w2_c1.off", "ingest.w2_c1.peer",
    "ingest.w2_c16.on", "ingest.w2_c16.off", "ingest.w2_c16.peer",
    "ingest.batch200_c1.on", "ingest.batch200_c1.off",
    "restart", "disk.built", "disk.http",
    "reads.oldest_page", "reads.old_detail", "reads.overview", "reads.costs",
    "pause.ingest_journal", "pause.ingest_memory", "pause.purge",
)
# Issue 13's: q over a big stored history (a rare word, a common one, a number's prefix, ...), bytes with and without the index.
SEARCH_FIGURES = (
    "search.rare", "search.common", "search.phone", "search.short", "search.phrase", "search.none",
    "disk.with_index", "disk.without_index",
)


def test_journal_figures_all_emitted_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "journal.json"
    # --fast: tiny files, 0.5 s runs; the peer is skipped (the fixture harness has no targets/)
    run([str(BENCH / "journal.py"), "--fast", "--no-peer", "--out", str(out)], timeout=180)
    res = json.loads(out.read_text())
    figures = res["figures"]
    assert set(JOURNAL_FIGURES) <= set(figures)
    assert all(figures[k] is not None for k in JOURNAL_FIGURES if not k.endswith(".peer")), figures
    run0 = res["ingest"]["runs"][0]
    assert all(n == 0 for key in ("w2_c1_errors", "w2_c16_errors", "batch200_c1_errors") for n in run0[key].values())
    # a real server wrote a real file; a restarted one read every stored call back
    assert figures["disk.http"] > 0 and res["disk"]["http"][0]["calls"] > 0
    assert [r["calls"] for r in res["restart"]["200"]["runs"]] == [200]
    assert res["reads"]["history_calls"] == 2000 and res["reads"]["overview"]["statuses"] == {"200": 20}
    for name in ("ingest_journal", "ingest_memory"):
        assert all(r["errors"] == 0 and r["ingest_errors"] == 0 and r["count"] > 0 for r in res["pause"][name]["runs"])
    purge = res["pause"]["purge"]["runs"][0]
    assert purge["calls_before"] == 500 and purge["calls_after"] == 0 and purge["errors"] == 0


def test_search_figures_all_emitted_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "search.json"
    run([str(BENCH / "search.py"), "--fast", "--out", str(out)], timeout=180)
    res = json.loads(out.read_text())
    figures = res["figures"]
    assert all(figures[k] is not None for k in SEARCH_FIGURES), figures
    for name in ("rare", "common", "phone", "short", "phrase", "none"):
        assert figures[f"search.{name}"]["statuses"] == {"200": 10}, (name, figures)
    # every planted word and number is found: what was put in, and nothing on top for the rare ones
    planted = res["build"]["planted"]
    assert figures["search.rare"]["matches"] == planted["rare"] and figures["search.phone"]["matches"] == planted["phone"]
    assert figures["search.common"]["matches"] >= planted["common"] > 0 and figures["search.none"]["matches"] == 0
    assert res["reads"]["history_calls"] == 2000
    assert figures["disk.with_index"] > figures["disk.without_index"] > 0


def test_soak_cycles_clients_and_every_event_arrives(tmp_path: Path) -> None:
    out = tmp_path / "soak.json"
    # heartbeat 0.5 s: a closed stream is noticed at the next heartbeat (15 s as shipped)
    run([str(BENCH / "soak.py"), "--S", "5", "--seconds", "1", "--cycle2-seconds", "1", "--n", "20",
         "--heartbeat", "0.5", "--settle", "0.5", "--out", str(out)])
    res = json.loads(out.read_text())
    checks = res["checks"]
    # The functional checks must hold at any size; the latency and RSS ones are figures for the real run.
    for name in ("all subscribers connected", "no subscriber errors or drops", "every subscriber got every event",
                 "no ingest or REST errors", "fds back to baseline (+-2)",
                 "cycle 2 (reconnect all): no errors, every event, fds back"):
        assert checks[name], (name, res["results"], res.get("cycle2"))
    assert res["results"]["events_published"] >= 2 and res["results"]["rest_requests"] > 0


def test_active_bounds_runs_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "active-bounds.json"
    run([str(BENCH / "active_bounds.py"), "--calls", "200", "--seconds", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["calls"] == 200 and result["active_total"] == 200
    health = result["health"]
    assert health["count"] > 10 and health["errors"] == 0 and health["max_ms"] >= health["p99_ms"] > 0
    assert all(r["requests"] > 0 and r["errors"] == 0 for r in result["readers"].values())


def test_report_renders_the_committed_results_into_the_committed_summary(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    for f in (BENCH / "results").iterdir():
        if f.suffix == ".json":
            (results / f.name).write_bytes(f.read_bytes())
    run([str(BENCH / "report.py"), "--dir", str(results)])
    assert (results / "summary.md").read_text() == (BENCH / "results" / "summary.md").read_text()
    assert "--quick" in run([str(BENCH / "run.py"), "--help"])  # the orchestrator at least imports


# ------------------------------------------------------------------------- bench/experiments


def test_experiment_fairness_serves_both_apps(tmp_path: Path) -> None:
    lines = run([str(BENCH / "experiments" / "fairness.py"), "--n", "20", "--dur", "1", "--paths", "/api/v1/health"])
    rows = [json.loads(line) for line in lines.splitlines()]
    assert [r["case"] for r in rows] == ["as shipped", "gevent.sleep(0) per request"]
    assert all(r["req_per_s"] > 0 and r["errors"] == 0 for r in rows)


def test_experiment_gcprobe_at_toy_size() -> None:
    text = run([str(BENCH / "experiments" / "gcprobe.py"), "200"])
    for figure in ("gc-tracked objects per stored call:", "full gc.collect():", "overview:", "costs:",
                   "page of 50:", "detail view:"):
        assert figure in text, text


def test_experiment_schema_check_at_toy_size() -> None:
    text = run([str(BENCH / "experiments" / "schema_check.py"), "--number", "200"])
    assert [line.split()[0] for line in text.splitlines()] == ["call_start", "transcript", "turn", "call_end"]


def test_follow_latency_and_idle_cpu_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "follow.json"
    run([str(BENCH / "follow.py"), "--calls", "50", "--days", "2", "--latency-calls", "3", "--gap", "0.05",
         "--idle-seconds", "1", "--out", str(out)], timeout=180)
    res = json.loads(out.read_text())
    assert sorted(res["modes"]) == ["notify", "off", "poll"]
    assert res["modes"].pop("off")["idle_cpu"]["cpu_seconds"] >= 0
    for mode, row in res["modes"].items():
        assert row["mode"] == mode and row["errors"] == 0, row
        assert row["catch_up"]["folders_read"] >= 2  # today's and yesterday's calls (the first start has no cursor)
        assert row["latency_ms"]["n"] == 3 and row["latency_ms"]["max"] > 0
        assert row["idle_cpu"]["cpu_seconds"] >= 0


def test_import_speed_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "import.json"
    run([str(BENCH / "import.py"), "--fast", "--out", str(out)], timeout=180)
    res = json.loads(out.read_text())
    assert res["calls"] == 200 and res["calls_per_second"] > 0
    assert "200 imported" in res["summary"][0] and "200 already present" in res["summary_again"][0]


@pytest.mark.skipif(not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng and sox make the recording")
def test_recordings_peaks_quality_and_streams_at_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "recordings.json"
    run([str(BENCH / "recordings.py"), "--minutes", "0.5", "--streams", "3", "--stream-seconds", "1", "--repeat", "1",
         "--out", str(out)], timeout=180)
    res = json.loads(out.read_text())
    assert res["peaks_seconds"] and res["quality_seconds"] and res["quality"]["interruptions"] == 3
    assert res["streams"]["errors"] == [] and res["streams"]["rss_peak_mib"] > 0 and res["loop_blocked_reports"] == 0


def test_pgmulti_every_step_at_toy_size_and_every_process_agrees(tmp_path: Path, pg_database) -> None:
    out = tmp_path / "pgmulti.json"
    # The script makes a fresh database a measurement on this test's server (and drops them).
    run([str(BENCH / "pgmulti.py"), "--fast", "--db-url", pg_database(), "--out", str(out)], timeout=240)
    res = json.loads(out.read_text())
    assert all(res[step]["agree"] is True for step in ("ingest", "reads", "ready", "e2e")), res
    configs = res["ingest"]["configs"]
    assert sorted(configs) == ["pg1", "pg2", "pg4", "sqlite1"]
    for config in configs.values():
        for mode in ("batched", "single"):
            row = config[mode]
            assert row["events_per_s"] > 0 and row["non2xx"] == row["exc"] == 0, row
            assert row["totals"] == [row["expected"]] * config["processes"], row
    assert len(res["reads"]["w2"]["worker_pids"]) == 2 and res["reads"]["ratio_w2_w1"]["list"] > 0
    assert res["ready"]["sizes"]["200"]["ready_s_median"] > 0
    e2e = res["e2e"]
    for side in ("ingest_server", "other_server"):  # every subscriber got every event, on both processes
        assert e2e[side]["connected"] == 10 and e2e[side]["missing"] == 0 and e2e[side]["p99_ms"] > 0
