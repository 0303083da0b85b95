"""``ferry lookup``: read rows straight from the online store, without a server.

For operators and the sample: it shows exactly what the materializer stored (values, event
and created timestamps), decoded with the view's current schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from ferry.cli.compose import open_store
from ferry.cli.entity_options import raw_entity_options
from ferry.cli.output import jsonable
from ferry.cli.settings import load, online_store_url
from ferry.core.codec import RowCodec
from ferry.core.errors import InvalidValueError
from ferry.core.keys import encode_key
from ferry.core.repo import FeatureView
from ferry.core.timestamps import format_micros
from ferry.core.types import ValueType
from ferry.stores.base import ReadRequest, ViewTable
from ferry.stores.legacy_keys import LegacyKeysStore
from ferry.stores.schemas import learn_schemas, unknown_schemas


def run(args: argparse.Namespace) -> int:
    repo = load(args)
    view = repo.view(args.view)
    keys = entity_keys(view, args.entity)
    store = open_store(online_store_url(args, repo))
    if args.read_legacy_keys:
        store = LegacyKeysStore(store)

    codec = RowCodec(view.features)

    async def read() -> list[bytes | None]:
        try:
            table = ViewTable(repo.project, view.name, view.ttl_micros)
            rows = (await store.read([ReadRequest(table, [encode_key(k) for k in keys])]))[0]
            await learn_schemas(store, table, codec, unknown_schemas(codec, rows))
            return rows
        finally:
            await store.close()

    for key, row in zip(keys, asyncio.run(read()), strict=True):
        line: dict[str, Any] = dict(zip(view.join_key_names, key, strict=True))
        if row is None:
            line["found"] = False
        else:
            decoded = codec.decode(row)
            line["found"] = True
            line["event_timestamp"] = format_micros(decoded.event_timestamp)
            created = decoded.created_timestamp
            line["created_timestamp"] = None if created is None else format_micros(created)
            for feature, value in zip(view.features, decoded.values, strict=True):
                line[feature.name] = jsonable(feature.type, value)
        print(json.dumps(line, ensure_ascii=False))
    return 0


def entity_keys(view: FeatureView, specs: list[str]) -> list[tuple[int | str, ...]]:
    """The ``--entity`` options as one key tuple per entity, in the view's join-key order.

    Raises:
        InvalidValueError: a malformed option (``raw_entity_options``), or join keys
            missing, unknown or of the wrong type for the view.
    """
    columns = {name: values for name, (_, values) in raw_entity_options(specs).items()}
    if set(columns) != set(view.join_key_names):
        raise InvalidValueError(
            f"view {view.name!r} needs --entity for exactly its join keys "
            f"{', '.join(view.join_key_names)}; got {', '.join(columns) or 'none'}"
        )
    typed: list[list[int | str]] = []
    for key in view.join_keys:
        values = columns[key.name]
        if key.type is ValueType.STRING:
            typed.append(list(values))
            continue
        try:
            typed.append([int(v) for v in values])
        except ValueError:
            raise InvalidValueError(
                f"--entity {key.name}: values must be integers ({key.type.value})"
            ) from None
    return list(zip(*typed, strict=True))
