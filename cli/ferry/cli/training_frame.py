"""``ferry training-frame``: point-in-time training data from the offline store."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq

from ferry.cli.settings import load
from ferry.client.training import get_training_frame
from ferry.core.errors import InvalidValueError


def run(args: argparse.Namespace) -> int:
    repo = load(args)
    try:
        entities = pq.read_table(args.entities)
    except (OSError, pa.ArrowException) as err:  # missing, not Parquet, damaged
        raise InvalidValueError(f"cannot read the entity table {args.entities}: {err}") from err
    started = time.perf_counter()
    frame = get_training_frame(
        repo,
        entities,
        features=[f.strip() for f in args.features.split(",")] if args.features else None,
        feature_service=args.feature_service,
        timestamp_column=args.timestamp_column,
        include_event_timestamps=args.event_timestamps,
    )
    partial = f"{args.out}.partial"
    try:
        pq.write_table(frame, partial, write_page_checksum=True)
        os.replace(partial, args.out)  # never leave a half-written file under the asked name
    except OSError as err:  # no such folder, a folder of that name, a full disk
        with contextlib.suppress(OSError):
            os.remove(partial)
        raise InvalidValueError(f"cannot write --out {args.out}: {err}") from None
    print(
        json.dumps(
            {
                "out": args.out,
                "rows": frame.num_rows,
                "columns": frame.num_columns,
                "seconds": round(time.perf_counter() - started, 3),
            }
        )
    )
    return 0
