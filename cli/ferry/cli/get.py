"""``ferry get``: ask a running server for features, print a table or JSON lines."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from ferry.cli.entity_options import parse_entity_options
from ferry.cli.output import instant_text, jsonable
from ferry.cli.settings import client_of
from ferry.client import OnlineFeatures


def run(args: argparse.Namespace) -> int:
    entities = parse_entity_options(args.entity)
    features = [f.strip() for f in args.features.split(",")] if args.features else None
    with client_of(args, args.timeout_s) as client:
        result = client.get_online_features(
            entities=entities, features=features, feature_service=args.feature_service
        )
    rows = _rows(entities, result)
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False, allow_nan=False))
    else:
        _print_table(entities, result)
    return 0


def _rows(entities: dict[str, list[int | str]], result: OnlineFeatures) -> list[dict[str, Any]]:
    rows = []
    for i in range(result.row_count):
        row: dict[str, Any] = {name: values[i] for name, values in entities.items()}
        for feature in result:
            value = feature.values[i] if feature.values[i] is not None else feature.stale_values[i]
            row[feature.name] = {
                "value": jsonable(feature.type, value),
                "status": feature.statuses[i],
                "event_timestamp": _instant_or_none(feature.event_timestamps[i]),
            }
        rows.append(row)
    return rows


def _print_table(entities: dict[str, list[int | str]], result: OnlineFeatures) -> None:
    header = [*entities, *result.names]
    body = []
    for i in range(result.row_count):
        cells = [str(values[i]) for values in entities.values()]
        for feature in result:
            status = feature.statuses[i]
            value = feature.values[i]
            if status == "PRESENT":
                cells.append(_short(value))
            elif status == "OUTSIDE_MAX_AGE":
                cells.append(f"{_short(feature.stale_values[i])} (stale)")
            else:
                cells.append(f"<{status}>")
        body.append(cells)
    widths = [max(len(h), *(len(r[c]) for r in body)) for c, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for cells in body:
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)))


def _instant_or_none(value: datetime | int | None) -> str | None:
    return None if value is None else instant_text(value)


def _short(value: Any) -> str:
    if isinstance(value, datetime):
        return instant_text(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_short(v) for v in value[:4]) + (", ...]" if len(value) > 4 else "]")
    return str(value)
