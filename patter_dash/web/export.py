"""Export: every matching call as CSV or JSON, streamed row by row.

The store gives a snapshot of references (not copies) and the journal the
calls older than memory a page at a time; rows are encoded in small batches
and the generator yields to other greenlets between them, so a 100,000-call
export neither builds the file in memory nor stalls the server.
CSV cells that a spreadsheet would run as a formula are prefixed with ``'``.
The snapshot (and the first page from disk) is taken before the answer
starts, so history that cannot be read is a 503, and dropped when the body
ends or the client leaves (a ``HEAD`` takes none). A row that cannot be encoded is
skipped, logged and counted (``/api/v1/health`` ``export.row_errors``): the
file stays well-formed, never cut short.
"""

from __future__ import annotations

import csv
import io
import itertools
import logging
import socket
import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, request

from ..model import jsoncodec, quality, records
from . import params
from .bodies import StreamStats, describe, guarded, shutdown_socket
from .context import current_dashboard

if TYPE_CHECKING:
    from .extension import PatterDashboard
from ..core.pipeline import paced
from ..core.store import CallFilter
from ..model.records import Call

log = logging.getLogger("patter_dash")
bp = Blueprint("export", __name__)

CSV_COLUMNS = (
    "call_id", "caller", "callee", "direction", "status", "started_at", "ended_at", "duration_seconds",
    "cost_stt", "cost_tts", "cost_llm", "cost_telephony", "cost_total",
    "latency_avg_ms", "latency_p95_ms", "turn_count", "provider_mode",
    "stt_provider", "tts_provider", "llm_provider", "telephony_provider", "flags",
    "tags", "rating", "notes",
    # Conversation quality (model/quality.py), last: columns added at the end leave older readers' positions alone.
    *quality.FIELDS, "quality_source",
)
#: What a spreadsheet runs as a formula when a cell starts with it.
FORMULA_TRIGGERS = ("=", "+", "-", "@")
#: Also neutralised when a cell starts with them (OWASP's list: a tab or CR
#: first can smuggle a formula past naive checks).
LEADING_CONTROLS = ("\t", "\r", "\n", "\x00")
#: Characters a spreadsheet skips or shows as nothing before a formula: all
#: spaces, separators and format/control/unassigned/private characters
#: (NBSP, zero-width space, BOM, ideographic space, ...), combining marks and
#: the blank letters Unicode counts as ignorable (Hangul fillers, braille blank).
_ASCII_TRIGGERS = frozenset("=+-@")
_INVISIBLE_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf", "Cn", "Co", "Cs", "Mn", "Me"})
_INVISIBLE_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


def _invisible(ch: str) -> bool:
    return ch.isspace() or ch in _INVISIBLE_LETTERS or unicodedata.category(ch) in _INVISIBLE_CATEGORIES


def visible_start(value: str) -> str:
    """``value`` as a spreadsheet would first see it: NFKC (so ＝ is =), invisible lead skipped."""
    text = unicodedata.normalize("NFKC", value)
    i = 0
    while i < len(text) and _invisible(text[i]):
        i += 1
    return text[i:]


def safe_cell(value: str) -> str:
    """Neutralise spreadsheet formulas: ``+15551234567`` becomes ``'+15551234567``.

    Spreadsheets read a leading apostrophe as "this cell is text" and do not
    display it, so the number still reads as itself, but nothing is evaluated.
    A trigger hidden behind spaces, zero-width or no-break spaces, a BOM, or
    written in fullwidth form (＝) counts too. Only text cells come here:
    numeric columns are written as numbers.
    """
    if not value or ("!" <= value[0] <= "~" and value[0] not in _ASCII_TRIGGERS):
        return value  # the common case, decided by the first character (NFKC leaves ASCII alone)
    if value.startswith(LEADING_CONTROLS) or visible_start(value).startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


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
        safe_cell(", ".join(call.tags)),  # no tag holds a comma (model/annotations.py)
        "" if call.rating is None else str(call.rating),
        safe_cell(call.notes),
        *(_number(s["quality"][k]) for k in quality.FIELDS),
        s["quality"]["source"],
    ]


class _RowGuard:
    """Encodes one export's rows; a row that fails is skipped, counted and logged, never fatal."""

    def __init__(self, stats: StreamStats, fmt: str) -> None:
        self.stats, self.fmt, self.skipped = stats, fmt, 0

    def encode(self, batch: list[Call], render: Callable[[list[Call]], list[str]]) -> list[bytes]:
        """``render(batch)`` as UTF-8; if it fails, row by row, leaving out the rows that fail."""
        try:
            return [text.encode("utf-8") for text in render(batch)]
        except Exception:
            pass  # rare: find the culprit(s) one row at a time
        out = []
        for call in batch:
            try:
                out.extend(text.encode("utf-8") for text in render([call]))
            except Exception:
                self.skipped += 1
                self.stats.add("row_errors")
                if self.skipped == 1:  # one traceback per export, not one per bad row
                    log.exception("patter-dash: %s export skipped call %s: it could not be encoded", self.fmt, _name(call))
        return out

    def report(self) -> None:
        if self.skipped:
            log.error("patter-dash: %s export skipped %d row(s) that could not be encoded", self.fmt, self.skipped)


def _name(call: Any) -> str:
    try:
        return repr(call.call_id)[:100]
    except Exception:
        return "(unnamed)"


def _paced(batches: Iterable[list[Call]]) -> Iterator[list[Call]]:
    """The history's batches (memory's window, then disk pages) in small, paced ones."""
    for calls in batches:
        yield from paced(calls)


def _csv(calls: Iterable[list[Call]], rows: _RowGuard) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")

    def render(batch: list[Call]) -> list[str]:
        buffer.seek(0)
        buffer.truncate()
        writer.writerows(csv_row(c) for c in batch)
        return [buffer.getvalue()]

    yield ",".join(CSV_COLUMNS).encode() + b"\r\n"
    for batch in _paced(calls):
        yield b"".join(rows.encode(batch, render))


def _dump(value: Any) -> str:
    # jsoncodec writes a non-finite number as null: a record never cuts an export short for one.
    return jsoncodec.dumps(value)


def _json(calls: Iterable[list[Call]], rows: _RowGuard, ndjson: bool) -> Iterator[bytes]:
    first = True
    if not ndjson:
        yield b"["
    for batch in _paced(calls):
        now = time.time()
        encoded = rows.encode(batch, lambda b: [_dump(records.detail(c, now)) for c in b])
        if ndjson:
            yield b"".join(r + b"\n" for r in encoded)
        elif encoded:
            yield (b"" if first else b",\n") + b",\n".join(encoded)
            first = False
    if not ndjson:
        yield b"]\n"


#: format -> (mimetype, file extension)
FORMATS = {"csv": ("text/csv", "csv"), "json": ("application/json", "json"), "ndjson": ("application/x-ndjson", "ndjson")}


def _begun(dash: PatterDashboard, flt: CallFilter, order: str) -> Iterator[list[Call]]:
    """The export's calls, its first two batches read now, while the answer can still be a 503.

    Those are memory's window (references: the snapshot) and the first page
    from disk: history that cannot be read (PostgreSQL down) is refused
    before any byte is sent, not a 200 cut short. The rest follows from disk
    a page at a time (:meth:`~patter_dash.core.history.History.batches`).
    """
    batches = dash.pipeline.history.batches(flt, order)
    return itertools.chain(list(itertools.islice(batches, 2)), batches)


def _body(dash: PatterDashboard, calls: Iterator[list[Call]], fmt: str) -> Iterator[bytes]:
    """The export; its snapshot is let go when the body ends or is closed (the client left)."""
    stats = dash.streams
    stats.add("open")
    rows = _RowGuard(stats, fmt)
    try:
        yield from _csv(calls, rows) if fmt == "csv" else _json(calls, rows, fmt == "ndjson")
        rows.report()
    finally:
        stats.add("open", -1)


def _download(fmt: str) -> Response:
    flt = params.call_filter(request.args)  # bad input: a 400 before anything is streamed
    order = params.sort(request.args)
    dash = current_dashboard()
    mimetype, extension = FORMATS[fmt]
    if request.method == "HEAD":
        body: Iterable[bytes] = iter(())  # headers only: no snapshot
    else:
        calls = _begun(dash, flt, order)
        abort = shutdown_socket(socket.SHUT_RDWR)
        body = guarded(_body(dash, calls, fmt), describe(), abort, lambda: dash.streams.add("failed"))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    response = Response(body, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="patter-calls-{stamp}.{extension}"'
    return response


@bp.get("/csv")
def csv_export() -> Response:
    return _download("csv")


@bp.get("/json")
def json_export() -> Response:
    return _download(params.choice(request.args, "format", ("json", "ndjson")) or "json")
