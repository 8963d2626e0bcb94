"""Built-in simulated voice runtime: a stand-in for a Patter agent taking calls.

Owns the demo traffic only. ``simulate_call`` is a pure function that scripts
one whole call as timed events shaped exactly like Patter 0.7.0's callback
payloads (see shared/patter-payloads); ``DemoRuntime`` replays many such calls
concurrently into a feed callable on a background thread.

Run ``python -m patter_dash.run.demo http://host:port`` to push demo traffic into
a remote dashboard through ``DashboardClient``.
"""

from __future__ import annotations

import copy
import heapq
import logging
import math
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from ..model.patter import Feed

log = logging.getLogger(__name__)
Event = tuple[float, str, dict[str, Any]]

# Prices in USD. The ElevenLabs flash figure is the one Patter's own table
# yields in the captured payload (0.01595 USD for 319 characters).
STT_PER_MIN = {"nova-3": 0.0043, "universal-streaming": 0.0025, "gpt-4o-mini-transcribe": 0.003}
TTS_PER_1K_CHARS = {
    "eleven_flash_v2_5": 0.05,
    "eleven_multilingual_v2": 0.18,
    "sonic-2": 0.038,
    "gpt-4o-mini-tts": 0.015,
}
LLM_PER_1M_TOKENS = {  # (input, output)
    "gpt-4o-mini": (0.15, 0.60),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "llama-3.3-70b-versatile": (0.59, 0.79),
    "gpt-realtime-mini": (10.0, 20.0),  # audio tokens
}
TELEPHONY_PER_MIN = 0.0085  # billed per started minute
SYSTEM_PROMPT_TOKENS = 140
AUDIO_TOKENS_PER_S_IN, AUDIO_TOKENS_PER_S_OUT = 10, 20
SPEECH_CHARS_PER_S = 15.0

# (weight, mode, stt_provider, stt_model, tts_provider, tts_model, llm_provider, llm_model)
STACKS = [
    (40, "pipeline", "deepgram", "nova-3", "elevenlabs", "eleven_flash_v2_5", "openai", "gpt-4o-mini"),
    (12, "pipeline", "deepgram", "nova-3", "cartesia", "sonic-2", "anthropic", "claude-3-5-haiku-latest"),
    (10, "pipeline", "assemblyai", "universal-streaming", "elevenlabs", "eleven_multilingual_v2", "openai", "gpt-4o-mini"),
    (8, "pipeline", "openai", "gpt-4o-mini-transcribe", "openai", "gpt-4o-mini-tts", "groq", "llama-3.3-70b-versatile"),
    (12, "realtime", "openai", "", "openai", "", "openai", "gpt-realtime-mini"),
]

LATENCY_KEYS = (
    "stt_ms", "llm_ms", "tts_ms", "total_ms", "user_speech_duration_ms", "llm_ttft_ms",
    "llm_total_ms", "endpoint_ms", "bargein_ms", "tts_total_ms", "agent_response_ms",
)
# Illustrative only: Patter leaves error_code "" on healthy calls.
MIDCALL_ERRORS = ("llm_timeout", "stt_connection_closed", "tts_quota_exceeded")


@dataclass(frozen=True)
class Script:
    direction: str
    number: str  # the agent's own line
    greeting: str
    middle: tuple[tuple[str, ...], ...]  # (user, agent[, tool]) exchanges, used as a prefix
    closing: tuple[str, str]


SCRIPTS = (
    Script("inbound", "+15550001234",
           "Thanks for calling Bright Smile Dental, this is Ava. How can I help you today?", (
               ("Hi, I'd like to book a teeth cleaning next week.",
                "Of course. I have Tuesday at ten or Thursday at two. Which works better for you?",
                'check_availability(service="cleaning", week="next") -> Tue 10:00, Thu 14:00'),
               ("Thursday at two works for me.",
                "Great, you're booked for Thursday at two. Can I have your full name, please?"),
               ("It's Jordan Lee.", "Thanks Jordan. Is this your first visit with us?"),
               ("No, I came in last spring.",
                "Perfect, I found your file. Are you still with Delta Dental for insurance?"),
               ("Yes, same insurance.", "All set. You'll get a text confirmation shortly."),
           ), ("That's everything, thanks.", "You're welcome, Jordan. See you Thursday!")),
    Script("inbound", "+15550004477",
           "Hi, thanks for calling Tony's Pizzeria! This is Marco. Pickup or delivery today?", (
               ("Delivery, please.", "Sure thing. What's the delivery address?"),
               ("42 Maple Street, apartment 3B.",
                "Got it, 42 Maple Street, 3B. You're in our zone. What would you like to order?",
                'check_delivery_zone(address="42 Maple St") -> in zone, 35 min'),
               ("A large pepperoni and a medium veggie.",
                "One large pepperoni and one medium veggie. Any drinks or sides?"),
               ("Add garlic knots.", "Garlic knots added. Your total is thirty-one fifty."),
               ("Can I pay by card at the door?", "Yes, the driver will bring a card reader."),
           ), ("Great, that's all.", "Thanks! Your order will arrive in about thirty-five minutes.")),
    Script("inbound", "+15550009100",
           "Northwind Fiber support, this is Sam. What can I help you with?", (
               ("My internet has been down since this morning.",
                "Sorry about that. Can I get the service address on the account?"),
               ("It's 18 Harbor Road.",
                "Thanks. I see an outage in your area affecting about two hundred homes.",
                'lookup_outage(address="18 Harbor Rd") -> outage #4471, ETA 14:30'),
               ("Do you know when it will be fixed?",
                "Technicians are on site; the estimate is two thirty this afternoon."),
               ("Will I get a credit for today?", "Yes, I've applied a one-day credit to your next bill."),
               ("Can you text me when it's back?", "Done, you'll get a text as soon as service is restored."),
           ), ("Okay, thank you.", "You're welcome. Sorry again for the trouble.")),
    Script("outbound", "+15550002020",
           "Hi, this is Mia from Lakeside Clinic with a reminder about your appointment "
           "tomorrow at nine. Can you still make it?", (
               ("Oh, actually I need to move it.", "No problem. I have tomorrow at four or Friday at eleven.",
                'find_slots(provider="Dr. Patel") -> Thu 16:00, Fri 11:00'),
               ("Friday at eleven, please.", "Done, you're moved to Friday at eleven with Dr. Patel."),
               ("Do I need to bring anything?", "Just your insurance card and a list of current medications."),
               ("Is parking still free?", "Yes, the garage on Elm Street is free for patients."),
               ("Okay, great.", "We'll also send you a text reminder the day before."),
           ), ("Thanks, bye.", "Thank you, have a good day!")),
    Script("outbound", "+15550006060",
           "Hello, this is Leo from Greenleaf Home Services following up on yesterday's "
           "furnace repair. Do you have a minute?", (
               ("Sure, go ahead.", "Thanks. Is the furnace running properly now?"),
               ("Yes, it's been fine.",
                "Glad to hear it. On a scale of one to five, how would you rate the technician?"),
               ("A five, he was great.", "Wonderful, I'll pass that along to Carlos.",
                'record_rating(job_id="J-2291", score=5) -> saved'),
               ("Do you offer yearly maintenance plans?",
                "We do, it's one forty-nine a year and includes two tune-ups."),
               ("Send me the details by email.", "Will do, you'll have it within the hour."),
           ), ("Thanks, that's all.", "Thanks for your time, have a great evening!")),
)


def _lat(rng: random.Random, median_ms: float, sigma: float = 0.3) -> float:
    """Log-normal latency, clipped so a rare draw stays a spike rather than absurd."""
    return min(rng.lognormvariate(math.log(median_ms), sigma), median_ms * 5)


def _percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks; reproduces Patter's figures."""
    s = sorted(values)
    pos = (len(s) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def latency_stats(turns: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    """latency_avg/p50/p90/p95/p99 the way Patter computes them.

    Averages take every non-null value, the greeting's zeros included;
    percentiles skip zeros (this reproduces the captured call_end exactly).
    """
    out: dict[str, dict[str, float | None]] = {}
    for name, q in (("latency_avg", None), ("latency_p50", 0.5), ("latency_p90", 0.9),
                    ("latency_p95", 0.95), ("latency_p99", 0.99)):
        stat: dict[str, float | None] = {}
        for key in LATENCY_KEYS:
            vals = [t["latency"][key] for t in turns if t["latency"][key] is not None]
            if not vals:
                stat[key] = None
            elif q is None:
                stat[key] = round(sum(vals) / len(vals), 1)
            else:
                positive = [v for v in vals if v > 0]
                stat[key] = round(_percentile(positive, q), 1) if positive else 0.0
        out[name] = stat
    return out


def _cost(stt: float, tts: float, llm: float, telephony: float) -> dict[str, float]:
    parts = [round(stt, 6), round(tts, 6), round(llm, 6), round(telephony, 6)]
    return dict(zip(("stt", "tts", "llm", "telephony"), parts),
                total=round(sum(parts), 6), llm_cached_savings=0.0)


def _latency(**values: float | None) -> dict[str, float | None]:
    return {k: (None if values.get(k) is None else round(values[k], 1)) for k in LATENCY_KEYS}


def simulate_call(rng: random.Random, now: float) -> list[Event]:
    """Script one whole call starting at epoch ``now``.

    Returns ``(offset_seconds, event_type, data)`` in emission order with
    non-decreasing offsets. Timestamps inside ``data`` are ``now + offset``.
    """
    return _Call(rng, now).play()


class _Call:
    """One simulated call: its script and provider stack, and the events it has emitted so far.

    :meth:`play` reads top to bottom like the call itself: dial (outbound),
    greet, the exchanges, hang up. Random draws happen in that order, so a
    seed always gives the same call.
    """

    def __init__(self, rng: random.Random, now: float) -> None:
        self.rng, self.now = rng, now
        self.script = rng.choice(SCRIPTS)
        stack = rng.choices(STACKS, weights=[s[0] for s in STACKS])[0]
        _, self.mode, _stt_p, self.stt_m, _tts_p, self.tts_m, _llm_p, self.llm_m = stack
        self.providers = stack[2::2]  # stt, tts, llm
        self.realtime = self.mode == "realtime"
        self.call_id = "CA%032x" % rng.getrandbits(128)
        self.customer = "+1555%07d" % rng.randrange(10**7)
        self.outbound = self.script.direction == "outbound"
        self.events: list[Event] = []
        self.history: list[dict[str, Any]] = []
        self.turns: list[dict[str, Any]] = []
        self.tts_chars = 0
        self.llm_cost = 0.0
        self.stt_seconds = 0.0
        self.context_tokens = SYSTEM_PROMPT_TOKENS
        self.start = 0.0

    # ----------------------------------------------------------- the call

    def play(self) -> list[Event]:
        caller, callee, t = self.customer, self.script.number, 0.0
        if self.outbound:
            t = self.dial()
            if t < 0:
                return self.events  # nobody answered
            caller = callee = ""  # outbound media streams carry no numbers
        self.start = self.emit(t + self.rng.uniform(0.2, 0.6) if self.outbound else 0.0, "call_start", {
            "call_id": self.call_id, "caller": caller, "callee": callee, "direction": self.script.direction,
            "custom_params": {"caller": caller, "callee": callee} if not self.outbound else {},
            "telephony_provider": "twilio"})
        listen_from = self.greet()
        error, exchanges, barge = self.plan()
        speech_start = listen_from + self.rng.uniform(0.3, 1.2)
        end_at = listen_from
        for i, exchange in enumerate(exchanges, start=1):
            end_at, listen_from, speech_start = self.exchange(i, exchange, listen_from, speech_start, end_at, i - 1 == barge)
        self.hang_up(end_at, error, caller, callee)
        return self.events

    def dial(self) -> float:
        """An outbound call rings; returns when it was answered, or -1 if it never was."""
        rng, script = self.rng, self.script
        self.emit(0.0, "call_initiated", {"call_id": self.call_id, "caller": script.number, "callee": self.customer,
                                          "direction": "outbound", "status": "initiated", "telephony_provider": "twilio"})
        t = self.emit(rng.uniform(0.4, 1.2), "call_status", {"call_id": self.call_id, "status": "ringing"})
        if rng.random() < 0.3:
            status = rng.choices(("no-answer", "busy", "failed"), weights=(6, 3, 1))[0]
            t += {"no-answer": rng.uniform(20, 30), "busy": rng.uniform(2, 6), "failed": rng.uniform(0.5, 2)}[status]
            t = self.emit(t, "call_status", {"call_id": self.call_id, "status": status})
            if rng.random() < 0.5:  # sometimes the SDK also closes the call out
                self.emit(t + 0.05, "call_end", {
                    "call_id": self.call_id, "caller": "", "callee": "", "ended_at": self.now + t + 0.05,
                    "transcript": [], "conversation_history": [],
                    "metrics": self.metrics(0.0, _cost(0, 0, 0, 0), status), "direction": "outbound"})
            return -1.0
        return self.emit(t + rng.uniform(3, 12), "call_status", {"call_id": self.call_id, "status": "in-progress"})

    def greet(self) -> float:
        """Turn 0: the static greeting, no STT/LLM work, so Patter reports zero latencies. Returns when it ends."""
        greeting = self.script.greeting
        greet_at = self.line(self.start + self.rng.uniform(1.0, 2.5), "assistant", greeting)
        self.tts_chars += len(greeting)
        self.turn(greet_at + 0.0001, 0, "", greeting, _latency(stt_ms=0.0, llm_ms=0.0, tts_ms=0.0,
                  total_ms=self.rng.uniform(150, 350)), len(greeting), None)
        return greet_at + len(greeting) / SPEECH_CHARS_PER_S

    def plan(self) -> tuple[str, list[tuple[str, ...]], int]:
        """How the conversation goes: a mid-call error (or ""), the exchanges, the one barged in on (or -1)."""
        rng, script = self.rng, self.script
        n_middle = rng.choices(range(6), weights=(1, 3, 4, 4, 3, 2))[0]
        exchanges = list(script.middle[:n_middle]) + [script.closing]
        error = ""
        if not self.outbound and rng.random() < 0.06:
            error = rng.choice(MIDCALL_ERRORS)
            exchanges = exchanges[:rng.randrange(1, len(exchanges) + 1)]
            if exchanges[-1] is script.closing and len(exchanges) > 1:
                exchanges.pop()
        barge = rng.randrange(len(exchanges) - 1) if len(exchanges) > 1 and rng.random() < 0.12 else -1
        return error, exchanges, barge

    def exchange(self, i: int, exchange: tuple[str, ...], listen_from: float, speech_start: float,
                 end_at: float, barged: bool) -> tuple[float, float, float]:
        """The caller speaks, maybe a tool runs, the agent answers (or is cut off).

        Returns (when the agent stopped, when listening resumes, when the caller next speaks).
        """
        rng, realtime = self.rng, self.realtime
        user, agent, *tool = exchange
        speech_ms = max(400.0, len(user) / SPEECH_CHARS_PER_S * 1000 * rng.lognormvariate(0, 0.15))
        speech_end = speech_start + speech_ms / 1000
        if realtime:
            stt = tts = 0.0
            endpoint = _lat(rng, 280)
            ttft = _lat(rng, 480, 0.35)
        else:
            stt = _lat(rng, 150)
            endpoint = stt + rng.uniform(0.1, 0.6)
            ttft = _lat(rng, 350, 0.35)
            tts = _lat(rng, 170)
        heard_at = self.line(speech_end + (endpoint if realtime else stt) / 1000, "user", user)
        self.stt_seconds += max(0.0, heard_at - listen_from)
        if tool:
            tool_ms = rng.uniform(250, 1200)  # the tool round-trip delays the first token
            self.line(heard_at + (ttft + tool_ms * 0.8) / 1000, "tool", tool[0])
            ttft += tool_ms
        agent_response = stt + ttft + tts + rng.uniform(0, 3)
        first_audio = speech_end + agent_response / 1000
        llm_total = ttft + len(agent) * rng.uniform(15, 25)
        self.bill(user, agent, speech_ms, bool(tool))

        bargein = None
        said = agent
        if barged:
            next_start = first_audio + rng.uniform(0.8, 2.0)  # the caller talks over the agent
            bargein = _lat(rng, 250)
            done_at = next_start + bargein / 1000
            cut = min(int((next_start - first_audio) * SPEECH_CHARS_PER_S), len(agent) - 1)
            said = (agent[:cut].rsplit(" ", 1)[0] or agent[:cut]).rstrip(" ,.;:!?") + "..."
        else:
            done_at = max(first_audio, heard_at + llm_total / 1000 + rng.uniform(0.1, 0.8))
            end_at = first_audio + len(agent) / SPEECH_CHARS_PER_S
            next_start = end_at + rng.uniform(0.3, 1.2)
        latency = _latency(
            stt_ms=stt, llm_ms=ttft, tts_ms=tts, total_ms=speech_ms + agent_response + rng.uniform(10, 120),
            user_speech_duration_ms=speech_ms, llm_ttft_ms=ttft, endpoint_ms=endpoint, bargein_ms=bargein,
            llm_total_ms=None if realtime else llm_total,
            tts_total_ms=None if realtime else llm_total + rng.uniform(300, 700),
            agent_response_ms=agent_response)
        done_at = self.turn(done_at, i, user, "[interrupted]" if bargein is not None else agent, latency, len(agent), ttft)
        self.line(done_at + 0.004, "assistant", said)
        if bargein is not None:
            end_at = done_at
        return end_at, min(end_at, next_start), next_start

    def bill(self, user: str, agent: str, speech_ms: float, tool: bool) -> None:
        """The LLM's tokens for one exchange (audio tokens in realtime mode), and the growing context."""
        p_in, p_out = LLM_PER_1M_TOKENS[self.llm_m]
        user_tokens = len(user) // 4 + (20 if tool else 0)
        if self.realtime:
            in_tok = self.context_tokens + speech_ms / 1000 * AUDIO_TOKENS_PER_S_IN
            out_tok = len(agent) / SPEECH_CHARS_PER_S * AUDIO_TOKENS_PER_S_OUT
        else:
            in_tok, out_tok = self.context_tokens + user_tokens, len(agent) / 4
            self.tts_chars += len(agent)
        self.llm_cost += (in_tok * p_in + out_tok * p_out) / 1e6
        self.context_tokens += user_tokens + len(agent) // 4

    def hang_up(self, end_at: float, error: str, caller: str, callee: str) -> None:
        rng = self.rng
        hangup = max(end_at, self.events[-1][0]) + (rng.uniform(0.1, 0.5) if error else rng.uniform(0.5, 2.0))
        ended = hangup + 0.05  # the stream closes just after the hang-up
        cost = self.so_far(ended)
        if not self.realtime:
            cost = _cost(self.stt_seconds / 60 * STT_PER_MIN[self.stt_m], cost["tts"], cost["llm"], cost["telephony"])
        if self.outbound:
            self.emit(hangup, "call_status", {"call_id": self.call_id, "status": "completed"})
        self.emit(ended, "call_end", {
            "call_id": self.call_id, "caller": caller, "callee": callee, "ended_at": self.now + ended,
            "transcript": [{"role": h["role"], "text": h["text"]} for h in self.history[1:]],
            "conversation_history": [dict(h) for h in self.history],
            "metrics": self.metrics(ended - self.start, cost, error),
            "direction": self.script.direction})

    # ------------------------------------------------------------ what it emits

    def emit(self, t: float, kind: str, data: dict[str, Any]) -> float:
        t = max(t, self.events[-1][0] if self.events else 0.0)
        self.events.append((round(t, 3), kind, data))
        return t

    def line(self, at: float, role: str, text: str) -> float:
        seen = [dict(h) for h in self.history]  # Patter hands each line the history so far, itself included
        at = self.emit(at, "transcript", {"role": role, "text": text, "call_id": self.call_id, "history": seen})
        self.history.append({"role": role, "text": text, "timestamp": self.now + at})
        seen.append(dict(self.history[-1]))
        return at

    def turn(self, at: float, index: int, user: str, agent: str, latency: dict[str, float | None],
             chars: int, ttft: float | None) -> float:
        at = max(at, self.events[-1][0])
        self.turns.append({"turn_index": index, "user_text": user, "agent_text": agent, "latency": latency,
                           "stt_audio_seconds": 0.0, "tts_characters": chars, "timestamp": self.now + at})
        # a copy, so a consumer mutating the live event cannot alter call_end's metrics
        return self.emit(at, "turn", {"call_id": self.call_id, "turn": copy.deepcopy(self.turns[-1]),
                                      "cost_so_far": self.so_far(at), "llm_ttft_ms": ttft})

    def so_far(self, at: float) -> dict[str, float]:
        tel = math.ceil(max(at - self.start, 0.001) / 60) * TELEPHONY_PER_MIN
        tts = 0.0 if self.realtime else self.tts_chars / 1000 * TTS_PER_1K_CHARS[self.tts_m]
        return _cost(0.0, tts, self.llm_cost, tel)  # Patter bills STT only at the end

    def metrics(self, duration: float, cost: dict[str, float], error: str) -> dict[str, Any]:
        """Patter's CallMetrics for the call so far, in the order Patter writes its keys."""
        stats = latency_stats(self.turns)
        stt_p, tts_p, llm_p = self.providers
        context_tokens = self.context_tokens if self.turns else 0
        return {
            "call_id": self.call_id, "duration_seconds": round(duration, 2), "turns": self.turns, "cost": cost,
            "latency_avg": stats["latency_avg"], "latency_p95": stats["latency_p95"],
            "provider_mode": self.mode, "stt_provider": stt_p, "tts_provider": tts_p, "llm_provider": llm_p,
            "telephony_provider": "twilio", "stt_model": self.stt_m, "tts_model": self.tts_m, "llm_model": self.llm_m,
            "latency_p50": stats["latency_p50"], "latency_p90": stats["latency_p90"],
            "latency_p99": stats["latency_p99"], "error_code": error,
            "preemptive_hits": 0, "preemptive_misses": 0, "context_tokens": context_tokens,
        }


class DemoRuntime:
    """Replays simulated calls into ``feed`` from one daemon thread.

    Calls arrive as a Poisson process (``calls_per_minute``), capped at
    ``max_concurrent`` live calls; ``speed`` compresses the wall-clock
    timeline (payload timestamps keep the simulated clock).
    """

    def __init__(self, feed: Feed, *, calls_per_minute: float = 12, max_concurrent: int = 4,
                 seed: int | None = None, speed: float = 1.0) -> None:
        if speed <= 0 or calls_per_minute <= 0 or max_concurrent < 1:
            raise ValueError("speed and calls_per_minute must be > 0, max_concurrent >= 1")
        self.feed = feed
        self.calls_per_minute = calls_per_minute
        self.max_concurrent = max_concurrent
        self.speed = speed
        self.rng = random.Random(seed)
        self.calls_started = 0
        self.events_fed = 0
        self.events_dropped = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="patter-dash-demo", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return bool(self._thread and self._thread.is_alive())

    def _run(self) -> None:
        queue: list[tuple[float, int, str, dict[str, Any], int]] = []  # (due, seq, type, data, call#)
        remaining: dict[int, int] = {}  # call# -> events still to emit: a call is live until its last
        seq = 0
        next_arrival = time.monotonic()  # first call right away, so a fresh dashboard has something
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_arrival:
                    next_arrival = now + self.rng.expovariate(self.calls_per_minute / 60) / self.speed
                    if len(remaining) < self.max_concurrent:
                        call = self.calls_started
                        self.calls_started += 1
                        timed = simulate_call(self.rng, time.time())
                        remaining[call] = len(timed)
                        for offset, kind, data in timed:
                            heapq.heappush(queue, (now + offset / self.speed, seq, kind, data, call))
                            seq += 1
                while queue and queue[0][0] <= now:
                    _, _, kind, data, call = heapq.heappop(queue)
                    remaining[call] -= 1
                    if not remaining[call]:
                        del remaining[call]
                    self._emit(kind, data)
                wake = min(next_arrival, queue[0][0]) if queue else next_arrival
                self._stop.wait(max(0.0, min(wake - time.monotonic(), 1.0)))
            except Exception:  # a demo bug must not kill the thread
                log.exception("demo runtime step failed")
                self._stop.wait(1.0)

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        try:
            ok = self.feed(kind, data)
        except Exception:  # feed promises not to raise; stay alive if one does
            log.exception("demo feed raised on %s", kind)
            ok = False
        if ok is False:
            self.events_dropped += 1
        else:
            self.events_fed += 1


def main(argv: list[str] | None = None) -> int:
    import argparse

    from patter_dash.run.client import DashboardClient

    ap = argparse.ArgumentParser(description="Feed simulated Patter calls into a remote dashboard.")
    ap.add_argument("url", help="dashboard base URL, e.g. http://127.0.0.1:8000")
    ap.add_argument("--token")
    ap.add_argument("--transport", choices=("http", "ws"), default="http")
    ap.add_argument("--calls-per-minute", type=float, default=12)
    ap.add_argument("--max-concurrent", type=int, default=4)
    ap.add_argument("--speed", type=float, default=1.0)
    ap.add_argument("--seed", type=int)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    client = DashboardClient(args.url, token=args.token, transport=args.transport)
    runtime = DemoRuntime(client.feed, calls_per_minute=args.calls_per_minute,
                          max_concurrent=args.max_concurrent, seed=args.seed, speed=args.speed)
    runtime.start()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        runtime.stop()
        client.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
