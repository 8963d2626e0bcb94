"""Measuring: a call's recording measured once the call ends (its conversation quality), beside every request.

A call that ends naming a recording (``recording_path``), or whose recording
Patter's log folder holds under a recordings root, gets its quality figures
from the audio without anyone opening it: the analysis runs on a native
thread and its result goes to the call as an annotation queued for the one
writer (journaled, announced as ``call_updated``), so filters, exports and
analytics read the recording's figures, not only the events' estimate. A call
measured so is measured again only if its file changes and it is opened.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..model import quality
from ..model.records import Call
from . import speech
from .cooperative import in_background
from .recordings import NotAvailable, Recordings

if TYPE_CHECKING:
    from .pipeline import Pipeline

log = logging.getLogger("patter_dash")


class RecordingMeasurer:
    """Watches a pipeline's calls end and measures their recordings (see the module's docstring)."""

    def __init__(self, pipeline: Pipeline, recordings: Recordings, *, watch: bool = True) -> None:
        self.pipeline = pipeline
        self.recordings = recordings
        self.measured = 0
        if watch:  # the import command measures what it imported itself, once it is all in (it waits; a server never)
            pipeline.watchers.append(self.watch)

    def watch(self, call: Call, completed: bool, ended: bool) -> None:
        """Told under the store's lock: only decides, the work is handed to a native thread."""
        if not ended or call.active or call.quality is not None or not self.recordings.roots:
            return
        in_background(self.measure, call.call_id, call.started_at, call.meta_value("recording_path"))

    def measure(self, call_id: str, started_at: float | None, recording_path: object) -> None:
        """On a native thread: analyse, hand the figures to the writer; never raises (nobody waits)."""
        kept = self.analyse(call_id, started_at, recording_path)
        if kept is not None:
            self.pipeline.annotate_soon(call_id, {"quality": kept})

    def analyse(self, call_id: str, started_at: float | None, recording_path: object) -> dict[str, object] | None:
        """The figures a call keeps from its recording (:func:`~patter_dash.model.quality.measured`), or None:
        no recording, one never served, a mono one, or one that cannot be read (logged). Blocks: not on the loop."""
        try:
            located = self.recordings.open(call_id, started_at, recording_path)
        except NotAvailable:
            return None  # no recording, or one that is never served: the events' figures stand
        except Exception:
            log.exception("patter-dash: the recording of call %r could not be opened to measure it", call_id)
            return None
        try:
            if located.info.channels != 2:
                return None  # a mono recording does not tell the caller from the agent
            figures = speech.analyse(located.fd, located.info)
        except Exception:
            log.exception("patter-dash: the recording of call %r could not be measured", call_id)
            return None
        finally:
            located.close()
        self.measured += 1
        return quality.measured(figures)
