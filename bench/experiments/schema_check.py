"""What the typed check at ingest costs per event (patter_dash/model/events.py), on Patter's real payloads.

    .venv/bin/python bench/experiments/schema_check.py
    .venv/bin/python bench/experiments/schema_check.py --number 200   # toy size (tests run this)

Prints µs per event for the msgspec check alone and for the whole make_event
(cleaning + check), per event type. Here: check 0.4-4.6 µs, make_event 17-274 µs
(the cleaning is issue 11's work); the check stays a small part of ingest.
"""

from __future__ import annotations

import argparse
import json
import sys
import timeit
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from patter_dash.model.events import (
    field_error,  # noqa: E402
    make_event,  # noqa: E402
)

FIXTURES = REPO / "tests" / "fixtures" / "patter-payloads"
CASES = {
    "call_start": "call_start.json",
    "transcript": "transcript_user.json",
    "turn": "turn_metrics.json",
    "call_end": "call_end.json",
}


def main(number: int = 20_000) -> None:
    for event_type, name in CASES.items():
        data = json.loads((FIXTURES / name).read_text())
        check = timeit.timeit(lambda: field_error(event_type, data), number=number) / number * 1e6
        whole = timeit.timeit(lambda: make_event(event_type, data), number=number) / number * 1e6
        print(f"{event_type:<12} check {check:6.2f} µs   make_event {whole:7.2f} µs")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--number", type=int, default=20_000, help="timed repetitions per event type")
    main(parser.parse_args().number)
