"""The newest encoded row of each key across a view's batches, held until written.

Within one batch, ``ferry.core.ingest`` keeps each key's as-of row; across batches the
conditional write used to reconcile them, so a key whose rows fall into several batches was
written once per batch, all but the last write overwritten (a third of the writes on the
fraud data set). Holding the batches' rows by key, up to a bound, writes each key once.

The rule is the conditional write's own, so the store ends up with the same rows: a row
replaces a held one only if its (event, created) timestamps are greater; on equal
timestamps the first stays, as the store keeps the first of two writes of one schema.
"""

from __future__ import annotations

from collections.abc import Iterable

from ferry.core.codec import timestamp_prefix


class NewestRows:
    """Encoded rows by entity key, the newest per key (see the module doc)."""

    def __init__(self) -> None:
        self._rows: dict[bytes, bytes] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, rows: Iterable[tuple[bytes, bytes]]) -> int:
        """Hold these (key, row) pairs; returns how many rows lost to a newer one of their
        key (a held row replaced, or a new row older than the held one)."""
        held = self._rows
        superseded = 0
        for key, row in rows:
            old = held.get(key)
            if old is None:
                held[key] = row
                continue
            superseded += 1
            if timestamp_prefix(row) > timestamp_prefix(old):
                held[key] = row
        return superseded

    def take(self) -> list[tuple[bytes, bytes]]:
        """Every held row, in the order their keys were first held; holds none after."""
        rows = list(self._rows.items())
        self._rows = {}
        return rows
