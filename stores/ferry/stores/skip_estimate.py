"""Whether a conditional writer should read stored versions before it writes.

A store whose failed conditions cost as much as writes (DynamoDB bills a conditional
PutItem that fails as a write, and sends it all the same) gains from reading first when many
rows are not newer than what is stored (a run again after a kill, overlapping windows, a
backfill), and loses when few are (the usual incremental run: every row is new). The
estimate is the share of rows lately found not newer, whichever way they were found.
"""

from __future__ import annotations

# About the last 50 rows. The threshold: on DynamoDB's on-demand prices an eventually
# consistent read of a small item is a tenth of a write, and a read of 100 keys costs ~3 ms
# of client CPU against ~1.2 ms per PutItem (measured on moto), so reading first pays from
# about 10% of rows skipped; 20% leaves room for the estimate's noise.
_WEIGHT = 0.02
_THRESHOLD = 0.2


class SkipEstimate:
    """An exponentially weighted share of rows found not newer than the stored ones; it
    starts at 0 (write without reading)."""

    def __init__(self) -> None:
        self.share = 0.0

    def note(self, *, skipped: int = 0, written: int = 0) -> None:
        """Count rows found not newer (``skipped``), then rows written: each row moves the
        share a ``_WEIGHT`` of the way towards 1 or 0."""
        self.share = 1.0 - (1.0 - self.share) * (1.0 - _WEIGHT) ** skipped
        self.share *= (1.0 - _WEIGHT) ** written

    @property
    def worth_reading_first(self) -> bool:
        return self.share >= _THRESHOLD
