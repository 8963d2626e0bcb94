"""Export: every matching call as CSV or JSON, streamed row by row.

The store gives a snapshot of references (not copies); rows are encoded in
small batches and the generator yields to other greenlets between them, so a
100,000-call export neither builds the file in memory nor stalls the server.
CSV cells that a spreadsheet would run as a formula are prefixed with ``'``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, Response, request

from . import params, records
from .extension import current_dashboard
from .pipeline import let_others_run
from .records import Call

bp = Blueprint("export", __name__)
BATCH = 200  # rows encoded between two yields

CSV_COLUMNS = (
    "call_id", "caller", "callee", "direction", "status", "started_at", "ended_at", "duration_seconds",
    "cost_stt", "cost_tts", "cost_llm", "cost_telephony", "cost_total",
    "latency_avg_ms", "latency_p95_ms", "turn_count", "provider_mode",
    "stt_provider", "tts_provider", "llm_provider", "telephony_provider", "flags",
)
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\x00")


def safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas: ``+15551234567`` becomes ``'+15551234567``.

    Spreadsheets read a leading apostrophe as "this cell is text" and do not
    display it, so the number still reads as itself, but nothing is evaluated.
    """
    return "'" + value if value.startswith(FORMULA_TRIGGERS) else value


def iso(ts: float | None) -> str:
    if ts is None:
        return ""
    try:
        return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, ValueError, OSError):
        # Past year 9999 (a runtime's bad clock): the raw number, rather than an export cut short.
        return _number(ts)


def _number(value: float | None) -> str:
    return "" if value is None else repr(round(value, 6))


def csv_row(call: Call) -> list[str]:
    s = records.summary(call, time.time(), with_metrics=False)
    text = [s["call_id"], s["caller"], s["callee"], s["direction"], s["status"]]
    providers = s["providers"]
    return [
        *(safe_cell(v) for v in text),
        iso(call.started_at),
        iso(call.ended_at),
        _number(s["duration_seconds"]),
        *(_number(s["cost"][k]) for k in ("stt", "tts", "llm", "telephony", "total")),
        _number(s["latency_avg_ms"]),
        _number(s["latency_p95_ms"]),
        str(s["turn_count"]),
        safe_cell(s["provider_mode"]),
        *(safe_cell(providers[k]) for k in ("stt", "tts", "llm", "telephony")),
        safe_cell(" ".join(s["flags"])),
    ]


def _batched(calls: list[Call]) -> Iterator[list[Call]]:
    for i in range(0, len(calls), BATCH):
        yield calls[i : i + BATCH]
        let_others_run()


def _csv(calls: list[Call]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for batch in _batched(calls):
        writer.writerows(csv_row(c) for c in batch)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _dump(value: Any) -> str:
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    except ValueError:
        # A non-finite number in one record: null there, rather than an export cut short.
        return json.dumps(_finite(value), separators=(",", ":"), allow_nan=False, ensure_ascii=False)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json(calls: list[Call], ndjson: bool) -> Iterator[str]:
    if not ndjson:
        yield "["
    first = True
    for batch in _batched(calls):
        now = time.time()
        rows = [_dump(records.detail(c, now)) for c in batch]
        if ndjson:
            yield "".join(r + "\n" for r in rows)
        else:
            yield ("" if first else ",\n") + ",\n".join(rows)
        first = False
    if not ndjson:
        yield "]\n"


def _download(body: Iterable[str], mimetype: str, extension: str) -> Response:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="patter-calls-{stamp}.{extension}"'
    return response


@bp.get("/csv")
def csv_export() -> Response:
    calls = current_dashboard().store.snapshot(params.call_filter(request.args))
    return _download(_csv(calls), "text/csv", "csv")


@bp.get("/json")
def json_export() -> Response:
    fmt = params.choice(request.args, "format", ("json", "ndjson")) or "json"
    calls = current_dashboard().store.snapshot(params.call_filter(request.args))
    if fmt == "ndjson":
        return _download(_json(calls, True), "application/x-ndjson", "ndjson")
    return _download(_json(calls, False), "application/json", "json")
