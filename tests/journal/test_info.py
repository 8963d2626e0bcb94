"""Small facts kept with the history (``Batch.info``, read back by ``Journal.info``): the log follower's cursor.

Both engines keep them in the transaction of the batch they ride with, give
back the rows under a prefix (a path may hold ``%`` and ``_``: no wildcard
reading), and delete a row set to None. Secrets kept in the same table never
come back through it.
"""

from __future__ import annotations

from collections.abc import Callable

from patter_dash.journal import Batch, open_journal


def test_info_rows_round_trip_by_prefix_and_survive_a_reopen(new_db: Callable[[], str]) -> None:
    setting = new_db()
    journal = open_journal(setting)
    journal.check()
    journal.open()
    try:
        journal.secret("redact")
        journal.commit(Batch(info={
            "follow:/logs/a_1%/x": {"size": 10, "done": False},
            "follow:/logs/a_1%/y": [1, 2],
            "follow:/logs/ab1/z": "other folder",
            "followed_day": "2026-12-07",
        }))
        assert journal.info("follow:/logs/a_1%/") == {"follow:/logs/a_1%/x": {"size": 10, "done": False}, "follow:/logs/a_1%/y": [1, 2]}
        journal.commit(Batch(info={"follow:/logs/a_1%/x": None, "follow:/logs/a_1%/y": [3]}))
        assert journal.info("follow:/logs/a_1%/") == {"follow:/logs/a_1%/y": [3]}
    finally:
        journal.close()
    again = open_journal(setting)
    again.check()
    again.open()
    try:
        assert again.info("follow:") == {"follow:/logs/a_1%/y": [3], "follow:/logs/ab1/z": "other folder"}
        assert again.info("secret") == {}  # hex text, not this table's JSON facts: never handed out this way
    finally:
        again.close()
