"""Progress of a materialization: a one-line bar on a terminal, nothing otherwise.

The bar measures rows *settled*, not rows read: a row is settled once the store has
acknowledged the write of its batch (or it needed none: outside the window, null key or
time). Reading runs ahead of writing by up to ``max_writes_in_flight`` batches, so a bar of
rows read reached 100% while the last writes were still going.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Protocol, TextIO


@dataclass(frozen=True)
class Counts:
    """Running counts of one view.

    Attributes:
        rows_read: Rows of the source row groups read so far.
        rows_written: Rows the store has acknowledged as written.
        rows_settled: Rows read whose batch the store has acknowledged (or that needed no
            write); equals ``rows_read`` once every write is done.
    """

    rows_read: int
    rows_written: int
    rows_settled: int


class Progress(Protocol):
    """Receives running counts while a view is materialized."""

    def update(self, view: str, counts: Counts) -> None:
        """Counts so far for ``view``."""

    def finish(self, view: str, counts: Counts) -> None:
        """Final counts for ``view``: every write acknowledged."""


class SilentProgress:
    """Reports nothing: for pipes, files and tests."""

    def update(self, view: str, counts: Counts) -> None:
        pass

    def finish(self, view: str, counts: Counts) -> None:
        pass


class TerminalProgress:
    """Redraws one line per view on a terminal, at most ten times a second: rows settled
    against the total (the bar), rows read and written, the read rate, elapsed time and an
    ETA from the settle rate so far."""

    def __init__(
        self,
        stream: TextIO = sys.stderr,
        total_rows: dict[str, int] | None = None,
    ) -> None:
        self.stream = stream
        self.total_rows = total_rows or {}
        self._last_draw = 0.0
        self._started = time.monotonic()

    def update(self, view: str, counts: Counts) -> None:
        now = time.monotonic()
        if now - self._last_draw >= 0.1:
            self._last_draw = now
            self.stream.write(self.line(view, counts, now - self._started) + "\r")
            self.stream.flush()

    def finish(self, view: str, counts: Counts) -> None:
        self.stream.write(self.line(view, counts, time.monotonic() - self._started) + "\n")
        self.stream.flush()
        self._started = time.monotonic()

    def line(self, view: str, counts: Counts, elapsed_s: float) -> str:
        """The text of the bar after ``elapsed_s`` seconds (no line ending)."""
        elapsed_s = max(elapsed_s, 1e-9)
        total = self.total_rows.get(view)
        bar = ""
        eta = ""
        if total:
            settled = min(counts.rows_settled, total)
            filled = 30 * settled // total
            bar = "[" + "#" * filled + "." * (30 - filled) + f"] {100 * settled // total:3d}% "
            if settled < total:
                eta = (
                    f", ETA {_duration((total - settled) * elapsed_s / settled)}"
                    if settled
                    else ", ETA -"
                )
        of_total = f"/{total:,}" if total else ""
        return (
            f"\x1b[2K{view:<24} {bar}read {counts.rows_read:,}{of_total} "
            f"written {counts.rows_written:,} ({counts.rows_read / elapsed_s:,.0f} rows/s, "
            f"{_duration(elapsed_s)}{eta})"
        )


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return (
        f"{minutes} min {rest:02d} s"
        if minutes < 60
        else f"{minutes // 60} h {minutes % 60:02d} min"
    )


def progress_for(stream: TextIO, total_rows: dict[str, int]) -> Progress:
    """A terminal bar when ``stream`` is a terminal, otherwise silence."""
    return TerminalProgress(stream, total_rows) if stream.isatty() else SilentProgress()
