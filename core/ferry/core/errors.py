"""Ferry's exceptions. Every one ends in ``Error`` and derives from ``FerryError``.

    FerryError
    ├── RepoError                      the feature repo file is invalid (lists every problem)
    ├── SourceError                    an offline source is missing, unreadable or mismatched
    ├── UnknownReferenceError          something the repo does not declare
    │   ├── UnknownFeatureServiceError   a feature service
    │   ├── UnknownFeatureViewError      a feature view
    │   └── UnknownFeatureError          a feature, or a malformed feature reference
    ├── InvalidValueError              a value that does not fit its type or a rule
    ├── StoreError                     an online store failed
    │   └── StoreUnavailableError      the store cannot be reached or timed out
    └── MaterializationError           a materialization job could not run as asked

Every error has a ``reason`` (UPPER_SNAKE, stable, for machines) and ``metadata`` (each
value quoted in the message, by name), which the server sends in a ``google.rpc.ErrorInfo``.
Backend-specific errors live beside their backend and derive from these.
"""

from __future__ import annotations

from dataclasses import dataclass


class FerryError(Exception):
    """Root of every error Ferry raises on purpose.

    Args:
        message: What is wrong, naming the culprit.
        reason: Overrides the class's ``reason`` for this instance.
        **metadata: The values the message quotes, by name.
    """

    reason: str = "FERRY_ERROR"

    def __init__(self, message: str, *, reason: str | None = None, **metadata: object) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.metadata = {key: str(value) for key, value in metadata.items()}


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

    reason = "INVALID_FEATURE_REPO"

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"{len(problems)} {noun} in the feature repo:\n{lines}", problems=len(problems)
        )


class SourceError(FerryError):
    """An offline source is missing, unreadable, or its columns do not match the repo."""

    reason = "SOURCE_MISMATCH"


class UnknownReferenceError(FerryError):
    """Something the repo does not declare."""

    reason = "UNKNOWN_REFERENCE"


class UnknownFeatureServiceError(UnknownReferenceError):
    """A feature service the repo does not declare."""

    reason = "UNKNOWN_FEATURE_SERVICE"


class UnknownFeatureViewError(UnknownReferenceError):
    """A feature view the repo does not declare."""

    reason = "UNKNOWN_FEATURE_VIEW"


class UnknownFeatureError(UnknownReferenceError):
    """A feature reference that is malformed or names no declared feature."""

    reason = "UNKNOWN_FEATURE"


class InvalidValueError(FerryError):
    """A value does not fit its declared type or a rule (e.g. a null inside a list)."""

    reason = "INVALID_VALUE"


class UnknownSchemaError(InvalidValueError):
    """A stored row names a schema fingerprint its reader has not learnt (a row written
    under another schema of its view: ``ferry.stores.schemas`` looks the schema up)."""

    reason = "UNKNOWN_ROW_SCHEMA"

    def __init__(self, message: str, fingerprint: int, **metadata: str) -> None:
        super().__init__(message, fingerprint=f"{fingerprint:08x}", **metadata)
        self.fingerprint = fingerprint


class StoreError(FerryError):
    """An online store operation failed."""

    reason = "STORE_FAILED"


class StoreUnavailableError(StoreError):
    """The online store cannot be reached, or did not answer in time."""

    reason = "STORE_UNAVAILABLE"


class MaterializationError(FerryError):
    """A materialization job cannot run as asked (e.g. no start and no TTL to derive one)."""

    reason = "MATERIALIZATION_FAILED"
