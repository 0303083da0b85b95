"""Ferry's exceptions. Every one ends in ``Error`` and derives from ``FerryError``.

    FerryError
    ├── RepoError                  the feature repo file is invalid (lists every problem)
    ├── SourceError                an offline source is missing, unreadable or mismatched
    ├── UnknownReferenceError      a view, feature or feature service that is not declared
    ├── InvalidValueError          a value that does not fit its declared type or rule
    ├── StoreError                 an online store failed
    │   └── StoreUnavailableError  the store cannot be reached or timed out
    └── MaterializationError       a materialization job could not run as asked

Backend-specific errors live beside their backend and derive from these.
"""

from __future__ import annotations

from dataclasses import dataclass


class FerryError(Exception):
    """Root of every error Ferry raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a feature repo file.

    Attributes:
        file: The repo file's path as given.
        line: 1-based line of the offending node, or 0 when it has no position.
        path: Dotted path of the field, e.g. ``feature_views[0].ttl``.
        message: What was expected and what was found.
    """

    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class RepoError(FerryError):
    """The feature repo file is invalid. ``problems`` lists all of them, not only the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} {noun} in the feature repo:\n{lines}")


class SourceError(FerryError):
    """An offline source is missing, unreadable, or its columns do not match the repo."""


class UnknownReferenceError(FerryError):
    """A feature view, feature or feature service that the repo does not declare."""


class InvalidValueError(FerryError):
    """A value does not fit its declared type or a rule (e.g. a null inside a list)."""


class StoreError(FerryError):
    """An online store operation failed."""


class StoreUnavailableError(StoreError):
    """The online store cannot be reached, or did not answer in time."""


class MaterializationError(FerryError):
    """A materialization job cannot run as asked (e.g. no start and no TTL to derive one)."""
