"""Response-building benchmark: stored rows to GetOnlineFeaturesResponse bytes, no network.

For the 9-feature fraud_v1 service (2 views) and 1, 10 and 100 entity rows (90% found),
times in the same process:

  * baseline: what the server did before, rows decoded one by one into Python values and
    the response built as protobuf objects (a list per column, ``fill_column``), serialized;
  * ferry: ``read_features`` as the server runs it (arrays from 16 rows up, Python values
    below) writing wire bytes directly, then the response envelope;
  * ferry encode only: the same, with the rows already decoded (``decode_block``), which is
    the "response encoding" figure.

Prints µs per response and ns per value (rows x features), medians of several rounds;
with ``--python-loops``, ``ferry`` again with the per-row loops in Python (a child process
with ``FERRY_PURE_PYTHON=1``) beside the compiled ones. A benchmark, not a test.

    python loadtest/encode_bench.py --python-loops
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ferry.api.serving.v1 import serving_pb2
from ferry.api.types.v1 import types_pb2
from ferry.core import load_repo
from ferry.server.serving import Catalog, FeaturePlan, encode_slot_arrays, read_features
from ferry.stores import ReadRequest
from ferry.wire import PROTO_TYPE, fill_column, online_features_response

REPO = Path(__file__).resolve().parents[1] / "samples" / "fraud" / "feature_repo.yaml"
SAMPLE_VALUES = {
    "int64": 17,
    "double": 1234.5,
    "float": 42.25,
    "string": "GB",
    "bool": True,
    "list<float>": [0.1, -0.2, 0.3, 0.4],
}


def stored_rows(plan: FeaturePlan, rows: int, now: int) -> list[list[bytes | None]]:
    """Per view, ``rows`` encoded rows (every tenth missing, every seventh value null)."""
    out = []
    for slot in plan.slots:
        codec = slot.codec
        view_rows: list[bytes | None] = []
        for i in range(rows):
            values = [
                None if (i + j) % 7 == 0 else SAMPLE_VALUES[f.type.value]
                for j, f in enumerate(codec.features)
            ]
            view_rows.append(None if i % 10 == 9 else codec.encode(now - 1000 * i, now, values))
        out.append(view_rows)
    return out


class Stored:
    def __init__(self, found: list[list[bytes | None]]) -> None:
        self.found = found

    async def read(self, requests: Sequence[ReadRequest]) -> list[list[bytes | None]]:
        return self.found


def baseline(plan: FeaturePlan, found: list[list[bytes | None]], now: int) -> bytes:
    """The pre-array path: per-row decode, protobuf objects per column, then serialize."""
    response = serving_pb2.GetOnlineFeaturesResponse(row_count=len(found[0]))
    columns: list[Any] = [None] * len(plan.names)
    for slot, rows in zip(plan.slots, found, strict=True):
        ttl = slot.view.ttl_micros
        decoded = [None if r is None else slot.codec.decode(r) for r in rows]
        base = [
            types_pb2.VALUE_STATUS_NOT_FOUND
            if d is None
            else (
                types_pb2.VALUE_STATUS_OUTSIDE_MAX_AGE
                if ttl is not None and d.event_timestamp <= now - ttl
                else types_pb2.VALUE_STATUS_PRESENT
            )
            for d in decoded
        ]
        times = [0 if d is None else d.event_timestamp for d in decoded]
        for pick, position in zip(slot.picks, slot.outputs, strict=True):
            kind = plan.types[position]
            column = types_pb2.FeatureColumn(name=plan.names[position], type=PROTO_TYPE[kind])
            cells = [None if d is None else d.values[pick] for d in decoded]
            fill_column(column.values, kind, cells)
            column.statuses.extend(
                types_pb2.VALUE_STATUS_NULL_VALUE
                if c is None and s != types_pb2.VALUE_STATUS_NOT_FOUND
                else s
                for c, s in zip(cells, base, strict=True)
            )
            column.event_timestamp_micros.extend(times)
            columns[position] = column
    response.features.extend(columns)
    return response.SerializeToString()


def ferry(plan: FeaturePlan, found: list[list[bytes | None]], keys: dict[str, list[Any]]) -> bytes:
    columns = run_now(read_features(Stored(found), plan, keys))
    return online_features_response(len(found[0]), columns)


def run_now(coroutine: Coroutine[Any, Any, list[bytes]]) -> list[bytes]:
    """Run a coroutine that never suspends (its store answers at once), without a loop."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    raise RuntimeError("read_features suspended")


def encode_only(plan: FeaturePlan, found: list[list[bytes | None]], now: int) -> bytes:
    """Array path with decoding excluded: encodes already-decoded blocks."""
    out: list[bytes] = [b""] * len(plan.names)
    for slot, rows in zip(plan.slots, found, strict=True):
        encode_slot_arrays(plan, slot, rows, now, out)
    return online_features_response(len(found[0]), out)


def timed(work: Callable[[], object], repeat: int, rounds: int) -> float:
    """Median over rounds of the mean seconds per call."""
    per_round = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(repeat):
            work()
        per_round.append((time.perf_counter() - started) / repeat)
    return statistics.median(per_round)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", default="1,10,100")
    parser.add_argument(
        "--python-loops",
        action="store_true",
        help="also time the same in a child process with FERRY_PURE_PYTHON=1 (the per-row "
        "loops in Python, not ferry.core._speedups), after this one's rounds",
    )
    parser.add_argument("--json-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    plan = Catalog(load_repo(REPO)).plan_for_service("fraud_v1")
    now = time.time_ns() // 1000
    results = []
    for rows in (int(b) for b in args.batches.split(",")):
        found = stored_rows(plan, rows, now)
        keys = {"user_id": list(range(rows)), "merchant_id": [f"m{i:07d}" for i in range(rows)]}
        same = serving_pb2.GetOnlineFeaturesResponse.FromString
        assert same(ferry(plan, found, keys)).features == same(baseline(plan, found, now)).features
        repeat = max(20, 4000 // rows)
        values = rows * len(plan.names)
        cases: dict[str, Callable[[], object]] = {
            "baseline": lambda found=found: baseline(plan, found, now),
            "ferry": lambda found=found, keys=keys: ferry(plan, found, keys),
            "decode_block": lambda found=found: [
                s.codec.decode_block(r) for s, r in zip(plan.slots, found, strict=True)
            ],
            "arrays_decode_and_encode": lambda found=found: encode_only(plan, found, now),
        }
        figures = {name: timed(work, repeat, args.rounds) for name, work in cases.items()}
        encode = figures["arrays_decode_and_encode"] - figures["decode_block"]
        results.append(
            {
                "rows": rows,
                "values": values,
                **{f"{k}_us": round(v * 1e6, 1) for k, v in figures.items()},
                "array_encode_only_ns_per_value": round(encode / values * 1e9),
                "ferry_ns_per_value": round(figures["ferry"] / values * 1e9),
                "baseline_ns_per_value": round(figures["baseline"] / values * 1e9),
                "speedup": round(figures["baseline"] / figures["ferry"], 2),
            }
        )
    if args.json_only:
        print(json.dumps(results))
        return
    if args.python_loops:
        command = [sys.executable, __file__, "--json-only", "--rounds", str(args.rounds)]
        command += ["--batches", args.batches]
        env = {**os.environ, "FERRY_PURE_PYTHON": "1"}
        out = subprocess.run(command, env=env, check=True, capture_output=True, text=True)
        for mine, theirs in zip(results, json.loads(out.stdout), strict=True):
            mine["ferry_python_loops_us"] = theirs["ferry_us"]
            mine["compiled_vs_python_loops"] = round(mine["ferry_us"] / theirs["ferry_us"], 2)
    print(json.dumps(results, indent=2))
    if args.python_loops:
        print(f"\n{'rows':>5} {'python loops us':>15} {'compiled us':>11} {'ratio':>5}")
        for r in results:
            print(
                f"{r['rows']:>5} {r['ferry_python_loops_us']:>15} {r['ferry_us']:>11} "
                f"{r['compiled_vs_python_loops']:>5}"
            )
    print(
        f"\n{'rows':>5} {'baseline us':>11} {'ferry us':>9} {'speedup':>7} "
        f"{'ferry ns/value':>14} {'array encode ns/value':>21}"
    )
    for r in results:
        print(
            f"{r['rows']:>5} {r['baseline_us']:>11} {r['ferry_us']:>9} {r['speedup']:>7} "
            f"{r['ferry_ns_per_value']:>14} {r['array_encode_only_ns_per_value']:>21}"
        )


if __name__ == "__main__":
    np.seterr(all="raise")
    main()
