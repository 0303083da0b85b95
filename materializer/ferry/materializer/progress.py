"""Progress of a materialization: a one-line bar on a terminal, nothing otherwise."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    """Receives running counts while a view is materialized."""

    def update(self, view: str, rows_read: int, rows_written: int) -> None:
        """Counts so far for ``view``."""

    def finish(self, view: str, rows_read: int, rows_written: int) -> None:
        """Final counts for ``view``."""


class SilentProgress:
    """Reports nothing: for pipes, files and tests."""

    def update(self, view: str, rows_read: int, rows_written: int) -> None:
        pass

    def finish(self, view: str, rows_read: int, rows_written: int) -> None:
        pass


class TerminalProgress:
    """Redraws one line per view on a terminal, at most ten times a second."""

    def __init__(self, stream: TextIO = sys.stderr, total_rows: dict[str, int] | None = None):
        self.stream = stream
        self.total_rows = total_rows or {}
        self._last_draw = 0.0
        self._started = time.monotonic()

    def update(self, view: str, rows_read: int, rows_written: int) -> None:
        now = time.monotonic()
        if now - self._last_draw >= 0.1:
            self._last_draw = now
            self._draw(view, rows_read, rows_written, end="\r")

    def finish(self, view: str, rows_read: int, rows_written: int) -> None:
        self._draw(view, rows_read, rows_written, end="\n")
        self._started = time.monotonic()

    def _draw(self, view: str, rows_read: int, rows_written: int, end: str) -> None:
        total = self.total_rows.get(view)
        bar = ""
        if total:
            filled = min(30, 30 * rows_read // total)
            bar = "[" + "#" * filled + "." * (30 - filled) + f"] {100 * rows_read // total:3d}% "
        seconds = max(time.monotonic() - self._started, 1e-9)
        self.stream.write(
            f"\x1b[2K{view:<24} {bar}read {rows_read:,} written {rows_written:,} "
            f"({rows_read / seconds:,.0f} rows/s){end}"
        )
        self.stream.flush()


def progress_for(stream: TextIO, total_rows: dict[str, int]) -> Progress:
    """A terminal bar when ``stream`` is a terminal, otherwise silence."""
    return TerminalProgress(stream, total_rows) if stream.isatty() else SilentProgress()
