"""Speech: who spoke when in a call's stereo recording, and the quality figures read from it.

A frame-energy voice activity detector, per channel (Patter's recordings:
left the caller, right the agent):

1. the audio is cut in :data:`FRAME_MS` frames and each frame's RMS taken;
2. a channel's noise floor is the :data:`FLOOR_PERCENTILE` th percentile of its
   frames' RMS; a frame is speech when its RMS passes the floor by
   :data:`ABOVE_FLOOR_DB`, and at least :data:`MIN_RMS` (about -50 dBFS: digital
   silence has a floor of 0);
3. bursts shorter than :data:`MIN_SPEECH_MS` are dropped (clicks), then pauses
   shorter than :data:`HANGOVER_MS` inside speech are filled (between words).

Then, over frames: talk-over is both channels speaking; dead air a stretch of
both silent longer than :data:`~patter_dash.model.quality.DEAD_AIR_MS` between
the first and the last word of the call (the silence before the first word is
the time to first word, the one after the last is the hang-up); an
interruption a caller's speech that starts while the agent speaks; the first
word the agent's first speech frame, from the recording's start. A mono
recording says nothing about who spoke: it is not measured.

Runs on a native thread (CPU and disk): the web layer offloads it. The RMS of
a frame is ``audioop.rms`` (C) where Python still has it, else computed here.
"""

from __future__ import annotations

import array
import math
import os
import sys
import warnings
from operator import mul
from typing import Any

from ..model.quality import DEAD_AIR_MS
from .recordings import WavInfo

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import audioop as _audioop  # deprecated in 3.11, gone in 3.13: the pure-Python path below stands in
except ImportError:  # pragma: no cover - Python 3.13+
    _audioop = None

FRAME_MS = 20
FLOOR_PERCENTILE = 5
ABOVE_FLOOR_DB = 12.0
MIN_RMS = 100.0
MIN_SPEECH_MS = 60
HANGOVER_MS = 300
#: Frames read at once: 10 s of audio, so memory stays small for an hour-long call.
_CHUNK_FRAMES = 500
METHOD = f"energy VAD, {FRAME_MS} ms frames, floor P{FLOOR_PERCENTILE} + {ABOVE_FLOOR_DB:g} dB (min {MIN_RMS:g}), hangover {HANGOVER_MS} ms"


class NotStereo(ValueError):
    """A recording with one channel: no caller and agent to tell apart."""


def _rms_python(samples: array.array[int]) -> float:
    return math.sqrt(sum(map(mul, samples, samples)) / len(samples)) if samples else 0.0


def frame_energies(fd: int, info: WavInfo) -> tuple[list[float], list[float]]:
    """Per :data:`FRAME_MS` frame, the RMS of the left (caller) and right (agent) channel."""
    if info.channels != 2:
        raise NotStereo("a mono recording does not tell the caller from the agent")
    per = info.sample_rate * FRAME_MS // 1000
    width = 4
    left: list[float] = []
    right: list[float] = []
    offset, end = info.data_offset, info.data_offset + info.frames * width
    while offset < end:
        raw = os.pread(fd, min(per * width * _CHUNK_FRAMES, end - offset), offset)
        if not raw:
            break
        offset += len(raw)
        raw = raw[: len(raw) - len(raw) % width]
        if _audioop is not None and sys.byteorder == "little":
            caller, agent = _audioop.tomono(raw, 2, 1, 0), _audioop.tomono(raw, 2, 0, 1)
            step = per * 2
            for at in range(0, len(caller), step):
                left.append(float(_audioop.rms(caller[at : at + step], 2)))
                right.append(float(_audioop.rms(agent[at : at + step], 2)))
            continue
        samples = array.array("h", raw)
        if sys.byteorder == "big":
            samples.byteswap()
        caller_s, agent_s = samples[0::2], samples[1::2]
        for at in range(0, len(caller_s), per):
            left.append(_rms_python(caller_s[at : at + per]))
            right.append(_rms_python(agent_s[at : at + per]))
    return left, right


def threshold(energies: list[float]) -> float:
    """A channel's speech threshold: its noise floor raised by :data:`ABOVE_FLOOR_DB`, never under :data:`MIN_RMS`."""
    if not energies:
        return MIN_RMS
    floor = sorted(energies)[min(len(energies) - 1, len(energies) * FLOOR_PERCENTILE // 100)]
    return max(MIN_RMS, floor * 10 ** (ABOVE_FLOOR_DB / 20))


def _runs(active: list[bool]) -> list[tuple[int, int]]:
    """(first, end) frame ranges where ``active`` holds."""
    runs, start = [], None
    for i, on in enumerate(active):
        if on and start is None:
            start = i
        elif not on and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(active)))
    return runs


def speech(energies: list[float]) -> list[bool]:
    """Per frame, whether the channel speaks (see the module's docstring)."""
    limit = threshold(energies)
    shortest, hangover = MIN_SPEECH_MS // FRAME_MS, HANGOVER_MS // FRAME_MS
    runs = [r for r in _runs([e > limit for e in energies]) if r[1] - r[0] >= shortest]
    merged: list[tuple[int, int]] = []
    for first, end in runs:
        if merged and first - merged[-1][1] < hangover:
            merged[-1] = (merged[-1][0], end)
        else:
            merged.append((first, end))
    active = [False] * len(energies)
    for first, end in merged:
        active[first:end] = [True] * (end - first)
    return active


def figures(caller: list[bool], agent: list[bool]) -> dict[str, Any]:
    """The quality figures of two channels' speech frames (model/quality.py's RECORDED), in ms."""
    n = min(len(caller), len(agent))
    caller, agent = caller[:n], agent[:n]
    both = sum(1 for c, a in zip(caller, agent) if c and a)
    anyone = [c or a for c, a in zip(caller, agent)]
    spoken = [i for i, on in enumerate(anyone) if on]
    dead = []
    if spoken:
        for first, end in _runs([not on for on in anyone[spoken[0] : spoken[-1] + 1]]):
            if (end - first) * FRAME_MS > DEAD_AIR_MS:
                dead.append((end - first) * FRAME_MS)
    interruptions = 0
    for first, _ in _runs(caller):
        # The agent already speaking in the frame before the caller starts: the caller barged in.
        if first > 0 and agent[first] and agent[first - 1]:
            interruptions += 1
    first_word = next((i for i, on in enumerate(agent) if on), None)
    return {
        "talk_over_ms": both * FRAME_MS,
        "dead_air_ms": sum(dead),
        "dead_air_count": len(dead),
        "interruptions": interruptions,
        "first_word_ms": None if first_word is None else first_word * FRAME_MS,
        "caller_speech_ms": sum(caller) * FRAME_MS,
        "agent_speech_ms": sum(agent) * FRAME_MS,
    }


def analyse(fd: int, info: WavInfo) -> dict[str, Any]:
    """A stereo recording's quality figures, read once (:class:`NotStereo` for a mono one)."""
    left, right = frame_energies(fd, info)
    view = figures(speech(left), speech(right))
    view["duration_ms"] = round(info.duration * 1000)
    view["method"] = METHOD
    return view
