"""The fraud data set of datasets/fraud.py, with edge rows added, and a brute-force oracle."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ferry.core import FeatureRepo, FeatureView, RowCodec, ValueType, decode_key, encode_key

ROOT = Path(__file__).parents[2]
SAMPLE_REPO = ROOT / "samples" / "fraud" / "feature_repo.yaml"
DAY = 86_400_000_000

# Single-row users that sit on the edges of the rule at END: event == END - ttl (too old),
# event == END (included), event == END + 1 µs (not yet).
EDGE_TOO_OLD, EDGE_AT_END, EDGE_TOO_NEW = 990_001, 990_002, 990_003


def generate(
    out: Path,
    *,
    users: int,
    merchants: int,
    transactions: int,
    end: int,
    ttl: int,
    start: str = "2026-01-01",
) -> None:
    """Write the data set, plus a part with null keys, a null time and the edge users."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "datasets" / "fraud.py"),
            str(out),
            "--users",
            str(users),
            "--merchants",
            str(merchants),
            "--start",
            start,
            "--transactions",
            str(transactions),
        ],
        check=True,
        capture_output=True,
    )
    template = pq.read_table(next((out / "user_stats").glob("*.parquet"))).slice(0, 6)
    times = [end - ttl, end, end + 1, end - 5, end - 6, None]
    ids = [EDGE_TOO_OLD, EDGE_AT_END, EDGE_TOO_NEW, None, None, 990_004]
    extra = template.set_column(
        template.schema.get_field_index("user_id"), "user_id", pa.array(ids, pa.int64())
    ).set_column(
        template.schema.get_field_index("event_timestamp"),
        "event_timestamp",
        pa.array(times, pa.timestamp("us", tz="UTC")),
    )
    pq.write_table(extra, out / "user_stats" / "part-edges.parquet", write_page_checksum=True)


def source_rows(repo: FeatureRepo, view: FeatureView) -> list[dict[str, Any]]:
    table = ds.dataset(f"{repo.offline_root}/{view.source.path}").to_table()
    for name in (view.source.timestamp_field, view.source.created_timestamp_field):
        if name:
            table = table.set_column(
                table.schema.get_field_index(name), name, table[name].cast(pa.int64())
            )
    return table.to_pylist()


def oracle(repo: FeatureRepo, view: FeatureView, at: int) -> dict[bytes, dict[str, Any]]:
    """The as-of row at ``at`` of every entity, straight from the rule, row by row."""
    best: dict[bytes, tuple[tuple[int, int], dict[str, Any]]] = {}
    ts, created = view.source.timestamp_field, view.source.created_timestamp_field
    for row in source_rows(repo, view):
        keys = [row[k] for k in view.join_key_names]
        event = row[ts]
        if None in keys or event is None or event > at:
            continue
        if view.ttl_micros is not None and event <= at - view.ttl_micros:
            continue
        order = (event, row[created] if created and row[created] is not None else -(2**63))
        key = encode_key(keys)
        if key not in best or order > best[key][0]:
            best[key] = (order, row)
    return {key: row for key, (_, row) in best.items()}


def all_keys(repo: FeatureRepo, view: FeatureView) -> list[bytes]:
    keys = {
        encode_key([row[k] for k in view.join_key_names])
        for row in source_rows(repo, view)
        if None not in [row[k] for k in view.join_key_names]
    }
    return sorted(keys)


def as_stored(kind: ValueType, value: Any) -> Any:
    """A source value as the store gives it back: float32 features lose double precision."""
    if value is None:
        return None
    if kind is ValueType.FLOAT:
        return float(np.float32(value))
    if kind is ValueType.FLOAT_LIST:
        return [float(np.float32(v)) for v in value]
    return value


def check_stored(
    view: FeatureView, expected: dict[bytes, dict[str, Any]], stored: dict[bytes, bytes | None]
) -> None:
    """Every key holds exactly its oracle row (timestamps and every value), or nothing."""
    codec = RowCodec(view.features)
    mismatches = []
    for key, data in stored.items():
        want = expected.get(key)
        if want is None or data is None:
            if (want is None) != (data is None):
                mismatches.append((decode_key(key), "present" if data else "missing"))
            continue
        row = codec.decode(data)
        source = view.source
        created = want[source.created_timestamp_field] if source.created_timestamp_field else None
        got = (row.event_timestamp, row.created_timestamp, list(row.values))
        wanted = (
            want[source.timestamp_field],
            created,
            [as_stored(f.type, want[f.name]) for f in view.features],
        )
        if got != wanted:
            mismatches.append((decode_key(key), got, wanted))
    assert not mismatches, f"{len(mismatches)} mismatches, first: {mismatches[:3]}"


def damage_a_page(part: Path) -> None:
    """Overwrite 4 KB inside the column chunks of a Parquet file (not its footer) with
    random bytes: the footer still reads, a data page no longer decodes."""
    content = bytearray(part.read_bytes())
    footer = int.from_bytes(content[-8:-4], "little") + 8
    at = 4 + (len(content) - footer - 4) // 3
    size = min(4096, len(content) - footer - at - 1)
    content[at : at + size] = random.Random(7).randbytes(size)
    part.write_bytes(bytes(content))
