"""Views: every JSON body the API answers, as typed models (the response half of the one schema source).

The routes build plain dicts (:mod:`patter_dash.model.records` and the
store's analytics, for speed); these models say what those dicts are. The
OpenAPI document's components are generated from them and from the event
models (:mod:`patter_dash.model.events`), and the test suite checks real
answers of every route against both, so the document, the validator and the
answers cannot drift apart.

A record is closed (an unexpected field is a drift and fails the check)
except where the product promises to give back what Patter sent: the call's
``extra``, unknown ``CallMetrics`` fields inside ``metrics``, and a turn's, a
transcript line's or a latency block's unknown fields. Those reuse Patter's own models, which
accept unknown fields.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from .annotations import MAX_NOTES, MAX_TAGS, Tag
from .clean import MAX_TEXT_LENGTH
from .search import COUNT_LIMIT, MATCH_CHARS
from .events import (
    EVENT_TYPES,
    Amount,
    CallMetrics,
    CostBreakdown,
    Count,
    Id,
    Label,
    LatencyBreakdown,
    Line,
    Short,
    TurnIndex,
    TurnMetrics,
)

#: Transcript lines a call keeps (the store's bound; one source for it and for this schema).
MAX_LINES = 10_000
#: Newest lines per live call in /calls/active (the route's bound and this schema's).
ACTIVE_LINES = 200
#: Newest turns per live call in /calls/active (the route's bound, its ``turns`` parameter's maximum, and this schema's).
ACTIVE_TURNS = 100
#: Turns one /calls/active page carries in all, shared evenly by its calls (so 1,000 calls get 5 each).
ACTIVE_PAGE_TURNS = 5_000
#: Characters of transcript, and separately of turn text, one /calls/active page carries, shared evenly by its calls.
ACTIVE_PAGE_TEXT = 1_000_000

Text = Annotated[str, Meta(max_length=MAX_TEXT_LENGTH)]
Ms = Annotated[float, Meta(ge=0, description="Milliseconds.")]


class _Record(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    # Closed: a field the route adds without saying so here fails the suite.
    pass


# ------------------------------------------------------------ one call


class ComponentCosts(_Record):
    """USD per component."""

    stt: Amount
    tts: Amount
    llm: Amount
    telephony: Amount


class Cost(ComponentCosts):
    """USD per component and in total, rounded to 6 decimals."""

    total: Amount


class Providers(_Record):
    """Provider names per component; empty when never reported."""

    stt: Label
    tts: Label
    llm: Label
    telephony: Label


class Models(_Record):
    """Model names per component; empty when never reported."""

    stt: Label
    tts: Label
    llm: Label


class CallMetricsRecord(CallMetrics, kw_only=True):
    """Patter's CallMetrics for the call, as given back, without its turns (they are the call's own ``turns``).

    History rows carry latency_avg, latency_p50 and latency_p95 and the provider
    fields; the detail adds latency_p90, latency_p99 and every other field
    Patter sent (*_model, context_tokens, ...), passed through unchanged.
    """

    call_id: Id
    duration_seconds: Amount | None
    cost: CostBreakdown
    latency_avg: LatencyBreakdown | None
    latency_p50: LatencyBreakdown | None
    latency_p95: LatencyBreakdown | None


class TurnRecord(TurnMetrics, kw_only=True):
    """Patter's TurnMetrics as given back. Turn 0 is the greeting (empty user_text); unknown fields are kept."""

    turn_index: Count | None
    user_text: Text
    agent_text: Annotated[Text, Meta(description='"[interrupted]" marks a barged-in turn.')]
    latency: LatencyBreakdown


class TranscriptLine(Line, kw_only=True):
    """A transcript line as Patter keeps it, with every other field sent with it (tool_name, tool_args, ...).

    A line mirrored from a turn that came with no line of its own carries the turn's turnIndex.
    """

    role: Short
    text: Text
    timestamp: Annotated[float | None, Meta(description="Epoch seconds, as the runtime sent it.")]
    turnIndex: TurnIndex | UnsetType = UNSET


class StatusChange(_Record):
    status: Short
    at: Annotated[float, Meta(description="Epoch seconds.")]


class Quality(_Record):
    """Conversation quality (model/quality.py): from the call's recording once measured, else from its events."""

    talk_over_ms: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(description="Both channels speaking at once; null from events (they cannot tell).")]
    dead_air_ms: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(description="Silences longer than 1,500 ms: in the recording both channels quiet between the first and last word; from events, responses slower than that, each counted whole.")]
    dead_air_count: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(description="How many such silences.")]
    interruptions: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(description="The caller barging in: caller speech starting while the agent speaks (recording), barge-ins (events).")]
    first_word_ms: Annotated[Annotated[int, Meta(ge=0)] | None, Meta(description="The agent's first word: from the recording's start (recording), the first turn's response latency (events); null when unknown.")]
    tool_calls: Annotated[int, Meta(ge=0, description="Tool invocations (a call and its result are one).")]
    tool_failures: Annotated[int, Meta(ge=0, description="Tool invocations whose result is an object with a non-empty error (Patter's {\"error\": ..., \"fallback\": true}).")]
    source: Annotated[Literal["recording", "events"], Meta(description="Where the first five figures come from.")]


class CallSummary(_Record):
    """The light view of a call: what the history table shows, without transcript or turns."""

    call_id: Id
    caller: Annotated[Label, Meta(description="E.164 number, or empty (outbound media streams carry none).")]
    callee: Label
    direction: Annotated[Short, Meta(description="inbound, outbound, or empty when never reported.")]
    status: Annotated[
        Short,
        Meta(description="in-progress, initiated, completed, no-answer, busy, failed, timeout (closed when idle), ..."),
    ]
    started_at: Annotated[float, Meta(description="Epoch seconds.")]
    ended_at: Annotated[float | None, Meta(description="Epoch seconds; null while the call is live.")]
    duration_seconds: Annotated[Amount | None, Meta(description="So far, for a live call.")]
    cost: Cost
    latency_avg_ms: Annotated[Ms | None, Meta(description="Mean response latency (agent_response_ms, else total_ms).")]
    latency_p95_ms: Ms | None
    provider_mode: Short
    providers: Providers
    models: Models
    turn_count: Count
    error_code: Annotated[
        Short, Meta(description="Patter's CallMetrics.error_code when the call ended abnormally; empty otherwise.")
    ]
    flags: Annotated[
        list[Short],
        Meta(
            description=(
                "Data-quality notes: no_start, late_turn, late_status, clock_skew, transcript_truncated "
                "(lines were dropped, see dropped_lines), evicted_idle (a live call closed as status timeout "
                "to make room under PATTER_DASH_MAX_ACTIVE_CALLS), extra_truncated (a transcript line's other "
                "fields passed 65,536 bytes of JSON: those that did not fit were left out), number_masked (the "
                "caller or callee came masked ***1234 or hashed sha256:... by Patter's PATTER_LOG_REDACT_PHONE, and "
                "is kept so)."
            )
        ),
    ]
    tags: Annotated[list[Tag], Meta(max_length=MAX_TAGS, description="Labels an operator gave the call (PATCH); [] when none.")]
    notes: Annotated[str, Meta(max_length=MAX_NOTES, description="An operator's notes (PATCH); empty when none.")]
    rating: Annotated[Annotated[int, Meta(ge=1, le=5)] | None, Meta(description="An operator's rating, 1-5 (PATCH); null when none.")]
    quality: Quality
    metrics: CallMetricsRecord


class PatterMetrics(CallMetrics, kw_only=True):
    """A finished call's metrics as Patter's dashboard holds them: Patter's CallMetrics with its turns.

    A call that ended without CallMetrics gets Patter's stand-in: the duration, the cost so far
    (zero when none), every latency percentile as {"total_ms": 0.0}, empty provider_mode, and its turns.
    Unknown fields Patter sent come back unchanged.
    """

    duration_seconds: Amount | None
    turns: list[TurnRecord]
    cost: CostBreakdown


class ToolCall(_Record, kw_only=True, tag="tool_call", tag_field="kind"):
    """A tool the agent called: Patter's tool line(s) (the call, then its result) as one entry."""

    at: Annotated[float | None, Meta(description="Epoch seconds the call was made.")]
    name: Annotated[str | None, Meta(description="Null for a tool line that came without Patter's tool fields (text only).")]
    arguments: Annotated[Any, Meta(description="tool_args as sent.")]
    result: Annotated[Any, Meta(description="tool_result as sent; null while none came.")]
    result_at: Annotated[float | None, Meta(description="When the result came.")] | UnsetType = UNSET
    text: Annotated[Text, Meta(description="The tool line's transcript text.")]


class BargeIn(_Record, kw_only=True, tag="barge_in", tag_field="kind"):
    """A turn the caller interrupted (agent_text "[interrupted]" or a latency.bargein_ms)."""

    at: Annotated[float | None, Meta(description="The turn's timestamp.")]
    turn_index: Count | None
    bargein_ms: Annotated[Ms | None, Meta(description="From detecting the caller to the agent's playback halted.")]


class CallError(_Record, kw_only=True, tag="error", tag_field="kind"):
    """The error code the call ended with (CallMetrics.error_code)."""

    at: Annotated[float | None, Meta(description="When the call ended.")]
    error_code: Short


TimelineEntry = ToolCall | BargeIn | CallError


class CallDetail(CallSummary):
    """The full record: the summary plus transcript, every turn, status history and unknown fields.

    ``metrics`` is Patter's whole CallMetrics, its ``turns`` included, as Patter's own
    ``/api/v1/calls/{id}`` and JSON export give it; ``turns`` repeats them at the top level.
    """

    metrics: Annotated[  # type: ignore[assignment]
        PatterMetrics | None,
        Meta(
            description=(
                "Patter's CallMetrics as Patter's dashboard holds them, with every turn in metrics.turns (the same "
                "list as turns). null while the call is live and when it was closed by a status (no-answer, busy, "
                "timeout, ...) without call_end, as in Patter."
            )
        ),
    ]

    transcript: Annotated[
        list[TranscriptLine],
        Meta(
            max_length=MAX_LINES,
            description=(
                "In reading order: as the lines arrived, except that each run of lines carrying a turnIndex is "
                "in (turnIndex, user before assistant before other roles) order."
            ),
        ),
    ]
    turns: list[TurnRecord]
    status_history: list[StatusChange]
    dropped_lines: Annotated[
        Count,
        Meta(
            description=(
                f"Transcript lines not kept: past {MAX_LINES:,} lines or PATTER_DASH_MAX_CALL_TEXT characters "
                "(the call is then flagged transcript_truncated)."
            )
        ),
    ]
    timeline: Annotated[
        list[TimelineEntry],
        Meta(description="Tool calls, barge-ins and the error code in time order, whichever way they came (callbacks, notify, imported logs)."),
    ]
    extra: (
        Annotated[dict[str, Any], Meta(description="Top-level fields Patter sent that are not modelled (e.g. custom_params).")]
        | UnsetType
    ) = UNSET


class ActiveCall(CallSummary):
    """A live call with the newest lines of its transcript and its newest turns (as Patter's live calls carry them)."""

    transcript: Annotated[
        list[TranscriptLine],
        Meta(
            max_length=ACTIVE_LINES,
            description=(
                f"The newest lines (at most {ACTIVE_LINES}) that fit this call's share of the page's "
                f"{ACTIVE_PAGE_TEXT:,}-character transcript budget ({ACTIVE_PAGE_TEXT:,} / limit; a line's other "
                "fields count too), in reading order; when even the newest line is longer, its start. "
                "The whole transcript is in GET /calls/{call_id}."
            ),
        ),
    ]
    transcript_lines: Annotated[Count, Meta(description="Lines the call holds.")]
    transcript_partial: Annotated[bool, Meta(description="Some of the call's lines or text are left out here.")]
    turns: Annotated[
        list[TurnRecord],
        Meta(
            max_length=ACTIVE_TURNS,
            description=(
                f"The call's newest turns so far, oldest first (Patter's TurnMetrics, as in GET /calls/{{call_id}}): "
                f"at most the turns parameter ({ACTIVE_TURNS} by default and at most), and at most "
                f"{ACTIVE_PAGE_TURNS:,} / limit, whose texts and other fields fit the call's share of a separate "
                f"{ACTIVE_PAGE_TEXT:,}-character budget ({ACTIVE_PAGE_TEXT:,} / limit); when even the newest turn is "
                "longer, it comes with its texts cut to the share and without its other fields. turn_count says how "
                "many the call holds; every turn whole is in GET /calls/{call_id}."
            ),
        ),
    ]
    turns_partial: Annotated[bool, Meta(description="Some of the call's turns, or of their text, are left out here.")]


# ------------------------------------------------------------ read bodies


class Pagination(_Record):
    limit: Annotated[int, Meta(ge=1, le=1000)]
    offset: Count
    count: Annotated[Count, Meta(description="Items in this page.")]
    total: Annotated[Count, Meta(description="Calls matching the filters (live calls, for /calls/active).")]
    total_exact: Annotated[bool, Meta(description=(
        f"Present (false) only when a q search matched more stored calls than are counted ({COUNT_LIMIT:,} on "
        "disk): total is then a lower bound."
    ))] | UnsetType = UNSET


class SearchMatch(_Record):
    """The first transcript line (reading order) holding a term of ``q``, as plain text."""

    index: Annotated[Count, Meta(description="The line's place in the detail's transcript.")]
    role: Short
    text: Annotated[
        str, Meta(max_length=MATCH_CHARS + 2, description="The line, cut to about 160 characters around the first hit (… marks a cut).")
    ]
    spans: Annotated[
        list[Annotated[list[Count], Meta(min_length=2, max_length=2)]],
        Meta(description="[start, end) character ranges of the terms in text, for highlighting."),
    ]


class CallRow(CallSummary):
    """A history row; with ``q``, where the query was found."""

    match: Annotated[
        SearchMatch | None,
        Meta(description="Only with q: the first matching transcript line, or null when only the id, caller or callee matched."),
    ] = None


class CallList(_Record):
    """Completed calls matching the filters, newest first."""

    data: list[CallRow]
    pagination: Pagination


class FullCallList(_Record):
    """Completed calls matching the filters, newest first, as full records (full=1)."""

    data: list[CallDetail]
    pagination: Pagination


class ActiveCallList(_Record):
    """Live calls, newest first (by when the dashboard first saw each), one page."""

    data: list[ActiveCall]
    count: Annotated[Count, Meta(description="Items in this page (as pagination.count).")]
    pagination: Pagination


class CallAnswer(_Record):
    data: CallDetail


class Overview(_Record):
    """Totals over completed calls started in the period (all of history without from/to)."""

    total_calls: Count
    total_minutes: Amount
    avg_duration: Annotated[Amount, Meta(description="Seconds.")]
    avg_latency_ms: Ms
    p95_latency_ms: Annotated[Ms | None, Meta(description="P95 over calls of each call's mean latency (within 1 %).")]
    total_cost: Annotated[Amount, Meta(description="USD.")]
    cost_breakdown: ComponentCosts
    active_calls: Count
    calls_by_status: dict[str, Count]


class OverviewAnswer(_Record):
    data: Overview


class Period(_Record):
    from_: Annotated[float | None, Meta(description="Epoch seconds, as asked.")] = msgspec.field(name="from")
    to: float | None


class CostPoint(_Record):
    t: Annotated[int, Meta(description="Bucket start, epoch seconds (UTC hour or day).")]
    calls: Count
    minutes: Amount
    cost: Cost
    avg_latency_ms: Ms
    p95_latency_ms: Ms | None


class Costs(_Record):
    """Exact cost totals (summed in integer nano-dollars) and a per-bucket series."""

    total_cost: Amount
    breakdown: ComponentCosts
    calls_analyzed: Count
    total_minutes: Amount
    period: Period
    bucket: Literal["hour", "day"]
    series: list[CostPoint]


class CostsAnswer(_Record):
    data: Costs


class Spread(_Record):
    """Exact percentiles over calls, each call counted once with its mean (nearest rank: the ⌈p·n⌉-th smallest)."""

    p50_ms: Ms | None
    p95_ms: Ms | None
    p99_ms: Ms | None
    calls: Annotated[Count, Meta(description="Calls with a measurement (the n of the percentiles).")]


class ProviderRow(_Record):
    """One provider (and model) of one kind, over the finished calls that named it."""

    kind: Annotated[
        Literal["stt", "llm", "tts", "telephony", "mode"],
        Meta(description="stt, llm, tts (provider and model), telephony (provider) or mode (provider_mode, the voice mode)."),
    ]
    provider: Annotated[Label | None, Meta(description="null: the calls did not say (e.g. no STT in a realtime call).")]
    model: Annotated[Label | None, Meta(description="null for telephony and mode, and where the calls named none.")]
    calls: Count
    minutes: Amount
    cost: Annotated[Amount, Meta(description="USD of the kind's own component (stt, llm, tts, telephony); of the total for mode.")]
    cost_per_minute: Annotated[Amount | None, Meta(description="cost / minutes; null when the calls lasted 0 s.")]
    cost_per_call: Amount
    failed: Annotated[Count, Meta(description="Calls whose status is failed, no-answer, busy or timeout.")]
    failure_rate: Annotated[float, Meta(ge=0, le=1, description="failed / calls.")]
    latency: Annotated[
        Spread | None,
        Meta(description="The stage's own latency (stt_ms, llm_ms, tts_ms; each call's mean); null for telephony and mode."),
    ]
    response_latency: Annotated[Spread, Meta(description="What the caller waited: agent_response_ms, else total_ms (each call's mean).")]


class ProviderComparison(_Record):
    """Rows by kind (stt, llm, tts, telephony, mode), then most calls first; over memory and the history file."""

    period: Period
    calls_analyzed: Count
    providers: list[ProviderRow]


class ProvidersAnswer(_Record):
    data: ProviderComparison


# ------------------------------------------------------------------ health


class QueueState(_Record):
    depth: Count
    capacity: Count


class EventCounters(_Record):
    accepted: Count
    duplicates: Count
    dropped: Count
    rejected: Count
    busy: Count
    errors: Count
    last_seq: Annotated[Count, Meta(description="The newest event's sequence number (its SSE id).")]


class StoreSizes(_Record):
    active: Count
    completed: Count
    max_completed: Count
    evicted: Count
    max_active: Count
    evicted_idle: Count


class SubscriberState(_Record):
    count: Count
    max: Count
    overflows: Count


class AuthState(_Record):
    """Who may use the dashboard (see the README's Security section).

    mode: token (PATTER_DASH_TOKEN), auto-token (generated, kept in token_file; local requests open),
    local (no token: local requests only) or insecure (PATTER_DASH_ALLOW_INSECURE). token: a token is
    required from other machines. loopback_ingest: POST /api/dashboard/ingest is accepted without the
    explicit token from local clients (PATTER_DASH_LOOPBACK_INGEST)."""

    mode: Literal["token", "auto-token", "local", "insecure"]
    token: bool
    token_file: str | None
    loopback_ingest: bool


class ExportCounters(_Record):
    open: Annotated[Count, Meta(description="Exports being streamed now (each holds a snapshot).")]
    row_errors: Annotated[Count, Meta(description="Rows skipped because they could not be encoded.")]
    failed: Annotated[Count, Meta(description="Exports cut short by an unexpected error.")]


class LogPosition(_Record):
    """PostgreSQL: where this process is in the shared log every process follows."""

    position: Annotated[int, Meta(description="The last log number this process applied.")]
    written: Annotated[int, Meta(description="The highest log number known written, by any process.")]
    behind: Annotated[Count, Meta(description="Log rows written and not applied here yet.")]
    behind_seconds: Annotated[Amount, Meta(description="How long this process has been behind.")]
    runs_jobs: Annotated[bool, Meta(description="Whether this process runs the once-only jobs (retention, the stale-call rule, alerts and their delivery, following Patter's logs).")]
    followed: Annotated[Count, Meta(description="Log rows applied while following.")]
    skipped: Annotated[Count, Meta(description="Log rows passed over (already applied, or of no type this release reads).")]
    reloads: Annotated[Count, Meta(description="Times this process read history back whole (too far behind).")]


class HistoryState(_Record):
    """Where history is kept (PATTER_DASH_DB) and how writing it goes; the UI header shows it.

    memory: nothing survives a restart (only mode and calls). sqlite: the file, its size with the
    write-ahead log, and the journal's state; status degraded (with error) while it cannot be
    written (ingest answers 503 then). postgres: the same, with whether the database answers and
    where this process is in the shared log."""

    mode: Annotated[str, Meta(description="memory, or the journal's engine (sqlite, postgres).")]
    calls: Annotated[Count, Meta(description="Completed calls counted in analytics (all of history, memory and disk).")]
    path: Annotated[str, Meta(description="The database file, or PostgreSQL's address without its password.")] | UnsetType = UNSET
    bytes: Annotated[Count, Meta(description="Size of the file and its write-ahead log.")] | UnsetType = UNSET
    status: Literal["ok", "degraded"] | UnsetType = UNSET
    error: Annotated[str | None, Meta(description="Why it cannot be written now.")] | UnsetType = UNSET
    lag: Annotated[Count, Meta(description="Events fed but not yet on disk.")] | UnsetType = UNSET
    commits: Count | UnsetType = UNSET
    events: Annotated[Count, Meta(description="Events written.")] | UnsetType = UNSET
    failures: Annotated[Count, Meta(description="Writes that failed.")] | UnsetType = UNSET
    last_commit_ms: Amount | UnsetType = UNSET
    restore_seconds: Annotated[Amount, Meta(description="How long the last start took to read history back.")] | UnsetType = UNSET
    database: Annotated[Literal["ok", "unreachable"], Meta(description="PostgreSQL: whether the database answers.")] | UnsetType = UNSET
    log: LogPosition | UnsetType = UNSET


class LogError(_Record):
    path: Annotated[str, Meta(description="The file or folder.")]
    reason: str
    at: Annotated[float, Meta(description="When, epoch seconds.")]


class PatterLogsState(_Record):
    """Following Patter's call logs (PATTER_DASH_PATTER_LOG_DIR; the standalone server only)."""

    root: Annotated[str, Meta(description="The log root followed (it holds calls/YYYY/MM/DD/<call id>/).")]
    mode: Annotated[Literal["notify", "poll"], Meta(description="notify: inotify; poll: stats of the recent day folders every 0.5 s.")]
    poll_reason: Annotated[str | None, Meta(description="Why it polls (the setting, or inotify unavailable).")]
    status: Annotated[Literal["starting", "catching_up", "following", "waiting", "standby", "stopped"],
                      Meta(description="catching_up: reading what changed while the server was down; waiting: the "
                                       "root has no calls/ folder yet (see waiting_for); standby: another process "
                                       "sharing this PostgreSQL history follows (the one running the jobs).")]
    waiting_for: str | None
    calls_followed: Annotated[Count, Meta(description="Calls read into the history since start.")]
    folders_read: Annotated[Count, Meta(description="Call folders read since start (at start, only those changed since the last run).")]
    live: Annotated[Count, Meta(description="Calls in progress followed now.")]
    days: Annotated[list[str], Meta(description="The UTC day folders followed (YYYY-MM-DD).")]
    errors: Annotated[Count, Meta(description="Files or folders that could not be read or used.")]
    last_error: LogError | None
    last_read_at: Annotated[float | None, Meta(description="When a folder was last read, epoch seconds.")]


class Health(_Record):
    """Event thread, queue, store, subscriber and history state."""

    status: Annotated[Literal["ok", "starting", "degraded"], Meta(description="degraded: history cannot be written (see history.error).")]
    uptime_seconds: Amount
    pid: int
    queue: QueueState
    events: EventCounters
    store: StoreSizes
    subscribers: SubscriberState
    auth: AuthState
    export: ExportCounters
    history: HistoryState
    patter_logs: PatterLogsState | UnsetType = UNSET


# ------------------------------------------------------------ deletion

#: The live stream's event that a deletion (a DELETE request or the retention purge) publishes.
CALL_DELETED = "call_deleted"
#: The live stream's event that a change of a call's tags, notes or rating (PATCH) publishes.
CALL_UPDATED = "call_updated"
#: The live stream's events for alert rules changing state (patter_dash.ops.alerts).
ALERT_FIRING = "alert_firing"
ALERT_RESOLVED = "alert_resolved"
#: Every event name the live stream (SSE ``event:``, WebSocket ``event``) carries.
STREAM_TYPES: tuple[str, ...] = (*EVENT_TYPES, CALL_DELETED, CALL_UPDATED, ALERT_FIRING, ALERT_RESOLVED)


class Deleted(_Record):
    """What a deletion answers once the calls are gone from memory, disk and analytics."""

    count: Annotated[Count, Meta(description="Calls deleted.")]
    call_ids: Annotated[list[Id], Meta(description="DELETE /calls/{call_id}: the call deleted.")] | UnsetType = UNSET
    before: Annotated[float, Meta(description="DELETE /calls?before=: the cutoff, epoch seconds.")] | UnsetType = UNSET


class CallDeletedFrame(_Record):
    """The data of an SSE ``call_deleted`` event (and of the WebSocket frame {"event": "call_deleted", ...}).

    Readers drop these calls wherever they show them. A bulk deletion or a retention pass
    sends one frame per batch of calls (one transaction each); ``?call_id=`` readers get the
    frames naming their call."""

    seq: Count
    type: Literal["call_deleted"]
    call_ids: Annotated[list[Id], Meta(min_length=1)]


class CallUpdatedFrame(_Record):
    """The data of an SSE ``call_updated`` event: a call's tags, notes or rating changed (PATCH /calls/{call_id}).

    ``call`` is its summary after the change (without ``metrics``), for the reader to show in place."""

    seq: Count
    type: Literal["call_updated"]
    call_id: Id
    call: dict[str, Any]


class CallUpdated(_Record):
    """What PATCH /calls/{call_id} answers once the change is on disk (with PATTER_DASH_DB) and announced."""

    data: CallSummary


# ------------------------------------------- Patter's own dashboard routes


class PatterRecord(_Record):
    """A finished call as Patter 0.7.0's dashboard answers it (GET /api/dashboard/calls, its export)."""

    call_id: Id
    caller: Label
    callee: Label
    direction: Annotated[Short, Meta(description="inbound or outbound (inbound when never reported, as in Patter).")]
    started_at: Annotated[float, Meta(description="Epoch seconds.")]
    ended_at: Annotated[float, Meta(description="Epoch seconds.")]
    status: Short
    metrics: Annotated[
        PatterMetrics | None,
        Meta(description="null when the call was closed by a status (no-answer, busy, timeout, ...) without call_end."),
    ]
    transcript: Annotated[list[TranscriptLine], Meta(max_length=MAX_LINES, description="In reading order, as in CallDetail.")]
    turns: list[TurnRecord]


class PatterLiveCall(_Record):
    """A live call as Patter 0.7.0's dashboard answers it (GET /api/dashboard/active, and /calls/{id} while live)."""

    call_id: Id
    caller: Label
    callee: Label
    direction: Annotated[Short, Meta(description="inbound or outbound (inbound when never reported, as in Patter).")]
    started_at: Annotated[float, Meta(description="Epoch seconds.")]
    status: Annotated[Short, Meta(description="initiated, in-progress, ringing, ...")]
    turns: Annotated[
        list[TurnRecord],
        Meta(description=f"Its turns so far, oldest first; in /active the newest that fit the page (as in ActiveCall, at most {ACTIVE_TURNS})."),
    ]
    transcript: Annotated[
        list[TranscriptLine],
        Meta(description=f"Its lines so far, in reading order; in /active the newest that fit the page (as in ActiveCall, at most {ACTIVE_LINES})."),
    ]


class PatterAggregates(_Record):
    """GET /api/dashboard/aggregates: totals over every finished call (Patter 0.7.0's shape)."""

    total_calls: Count
    total_cost: Annotated[Amount, Meta(description="USD.")]
    avg_duration: Annotated[Amount, Meta(description="Seconds.")]
    avg_latency_ms: Annotated[Ms, Meta(description="Mean over calls of each call's mean latency (agent_response_ms, else total_ms).")]
    cost_breakdown: ComponentCosts
    active_calls: Count
    sdk_version: Annotated[str, Meta(description="The installed getpatter's version, or empty when it is not installed here.")]


class PatterDeleteRequest(msgspec.Struct):
    """POST /api/dashboard/calls/delete: the calls to delete. Items that are not strings, or are empty, are ignored."""

    call_ids: list[Any]


class PatterDeleted(_Record):
    """What Patter's delete routes answer: the calls deleted (sorted), live calls, unknown and blank ids left out."""

    deleted: list[Id]
    count: Count


# ------------------------------------------------------- ingest and errors


class Accepted(_Record):
    seq: Annotated[Count, Meta(description="The event's place in the live stream; for a duplicate, the place it already has.")]
    duplicate: bool


class Ack(_Record):
    """What an ingest answers once every event of the body is applied."""

    accepted: Annotated[list[Accepted], Meta(description="One per event, in order.")]
    seq: Annotated[Count, Meta(description="Single-event bodies only.")] | UnsetType = UNSET
    duplicate: Annotated[bool, Meta(description="Single-event bodies only.")] | UnsetType = UNSET


class PatterAck(Ack, kw_only=True):
    """What POST /api/dashboard/ingest answers (Patter ignores it)."""

    ok: Literal[True]
    call_id: Id
    event: Annotated[Literal["initiated", "started", "ended"], Meta(description="How the body was classified.")]


class FieldError(_Record):
    field: Annotated[str, Meta(description='Where, e.g. "data.metrics.turns[2].latency.stt_ms" or "events[3].type".')]
    error: Annotated[str, Meta(description="What it must be.")]


class Error(_Record):
    """Every refusal: a message, and for a refused body each bad field and what it must be."""

    error: str
    details: list[FieldError] | UnsetType = UNSET


# ------------------------------------------------------------------ alerts

AlertKind = Literal["turn_latency", "stuck_call", "p95_latency", "failure_rate", "cost_per_call", "cost_per_hour",
                    "cost_per_day", "no_calls"]
AlertUnit = Literal["ms", "s", "%", "USD"]


class AlertScope(_Record):
    """Which calls a rule looks at (all when empty); provider and model match any stage's."""

    callee: str | UnsetType = UNSET
    direction: str | UnsetType = UNSET
    provider: str | UnsetType = UNSET
    model: str | UnsetType = UNSET


class AlertNotification(_Record):
    """One transition of a rule, as the webhook receives it (the body, signed) and as history keeps it."""

    id: Annotated[str, Meta(description="Unique per notification: a receiver drops a repeated delivery by it.")]
    type: Literal["alert_firing", "alert_resolved"]
    state: Literal["firing", "resolved"]
    rule: Annotated[str, Meta(description="The rule's name.")]
    kind: AlertKind
    threshold: float
    unit: AlertUnit
    window: Annotated[float | None, Meta(description="Seconds; windowed kinds only.")]
    scope: AlertScope
    value: Annotated[float | None, Meta(description="The measured value in the unit (null: no data).")]
    call_id: Annotated[str | None, Meta(description="The live call it is about (turn_latency, stuck_call).")]
    since: Annotated[float, Meta(description="When it started firing, epoch seconds.")]
    at: Annotated[float, Meta(description="When this transition happened, epoch seconds.")]
    message: Annotated[str, Meta(description="One human line (the Slack body's text).")]


class AlertFrame(AlertNotification, kw_only=True):
    """The data of an SSE ``alert_firing`` / ``alert_resolved`` event: the notification and its place in the stream."""

    seq: Count


class AlertFiring(_Record):
    call_id: str | None
    since: float
    value: float | None


class AlertRule(_Record):
    """A rule, its state now and its last notifications (newest first)."""

    name: str
    kind: AlertKind
    threshold: float
    unit: AlertUnit
    window: float | None
    min_calls: Count
    cooldown: Annotated[float, Meta(description="Seconds a resolved rule waits before it may notify again.")]
    scope: AlertScope
    destinations: list[str]
    state: Annotated[Literal["ok", "firing", "resolved"], Meta(description="resolved: recovered within the cooldown.")]
    value: Annotated[float | None, Meta(description="The last measured value (windowed kinds, no_calls).")]
    firing_count: Count
    firing: Annotated[list[AlertFiring], Meta(description="What fires now: calls (at most 100) or the rule itself.")]
    notified: Count
    suppressed: Annotated[Count, Meta(description="Evaluations held back by the cooldown.")]
    history: list[AlertNotification]


class AlertDestination(_Record):
    """A destination's delivery counters (its URL and secret are never shown)."""

    name: str
    type: Literal["webhook", "slack"]
    pending: Annotated[Count, Meta(description="Notifications waiting (queued or retrying).")]
    queued: Count
    delivered: Count
    failed_attempts: Count
    dropped: Annotated[Count, Meta(description="Dropped for newer ones: the queue was full.")]
    given_up: Annotated[Count, Meta(description="Dropped after max_attempts.")]
    last_error: str | None


class AlertsState(_Record):
    enabled: Annotated[bool, Meta(description="false: no PATTER_DASH_ALERTS file.")]
    firing: Annotated[Count, Meta(description="Rules firing now.")]
    evaluated_at: float | None
    decided_here: Annotated[bool, Meta(description=(
        "Whether this process decides the transitions and delivers them: always, but for several processes on "
        "PostgreSQL, where the one running the jobs does. The others show its transitions as they read them "
        "from the log, and its suppressed and destinations counts as of the last second."
    ))]
    rules: list[AlertRule]
    destinations: list[AlertDestination]


class AlertsAnswer(_Record):
    data: AlertsState
