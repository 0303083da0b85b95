"""The schemas a view's rows were written under, recorded in the online store itself.

A version 2 row (``ferry.core.codec``) names its schema by fingerprint only; a reader knows
its own view's schema, and learns any other from here. Every writer records the schema of
the rows it is about to write, before writing them (the materializer once per view per
job, PushFeatures once per view per serving process), so a reader that meets an unknown
fingerprint finds it here. A schema is an ordinary row of the view's schema table
(``ViewTable.schemas``), keyed by its fingerprint, holding its field descriptors: every
backend stores it through the same ``write`` and ``read`` as feature rows, with no TTL, and
writing it again is a no-op (equal timestamps, equal fingerprint: not newer).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

from ferry.core.codec import RowCodec
from ferry.core.errors import UnknownSchemaError
from ferry.core.repo import Feature
from ferry.core.types import ValueType
from ferry.stores.base import OnlineStore, Reader, ReadRequest, ViewTable

_SCHEMA_ROWS = RowCodec([Feature("descriptors", ValueType.BYTES)])


def schema_key(fingerprint: int) -> bytes:
    """The key of a schema's row in its view's schema table."""
    return fingerprint.to_bytes(4, "big")


async def record_schema(store: OnlineStore, table: ViewTable, codec: RowCodec) -> None:
    """Record the schema of ``codec`` for ``table``'s view (before writing rows with it)."""
    row = _SCHEMA_ROWS.encode(0, None, [codec.descriptors])
    await store.write(table.schemas, [(schema_key(codec.fingerprint), row)])


def unknown_schemas(codec: RowCodec, rows: Iterable[bytes | None]) -> set[int]:
    """The fingerprints of the rows ``codec`` cannot decode until it learns their schema."""
    unknown = set()
    for row in rows:
        if row is not None:
            try:
                codec.decode(row)
            except UnknownSchemaError as err:
                unknown.add(err.fingerprint)
    return unknown


async def learn_schemas(
    store: Reader, table: ViewTable, codec: RowCodec, fingerprints: Iterable[int]
) -> None:
    """Teach ``codec`` the recorded schemas of these fingerprints of ``table``'s view.

    Raises:
        UnknownSchemaError: a fingerprint has no recorded schema (its rows were written by
            something that did not record it, or the schema table was deleted).
    """
    wanted = sorted(set(fingerprints))
    if not wanted:
        return
    (rows,) = await store.read([ReadRequest(table.schemas, [schema_key(f) for f in wanted])])
    for fingerprint, row in zip(wanted, rows, strict=True):
        descriptors = None if row is None else _SCHEMA_ROWS.decode(row).values[0]
        if descriptors is None or zlib.crc32(descriptors) != fingerprint:
            raise UnknownSchemaError(
                f"rows of feature view {table.view!r} were written under schema "
                f"{fingerprint:08x}, which the online store has no record of; rewrite them "
                "(ferry materialize) or remove them (ferry delete-rows)",
                fingerprint,
                feature_view=table.view,
            )
        codec.learn(descriptors)
