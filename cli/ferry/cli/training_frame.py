"""``ferry training-frame``: point-in-time training data from the offline store."""

from __future__ import annotations

import argparse
import json
import os
import time

import pyarrow.parquet as pq

from ferry.cli.settings import add_repo_arguments, load
from ferry.client.training import get_training_frame
from ferry.core.errors import InvalidValueError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "training-frame",
        help="join features to an entity table as of each row's time (offline)",
        description="Write the entity table with one column per feature, each taken by the "
        "same as-of rule the materializer uses. Rows without a match get nulls.",
    )
    add_repo_arguments(parser, online=False)
    parser.add_argument("--entities", required=True, help="Parquet file of entity rows")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--features", help="comma-separated view:feature or view:* references")
    which.add_argument("--feature-service", help="a feature service name")
    parser.add_argument("--timestamp-column", default="event_timestamp")
    parser.add_argument(
        "--event-timestamps", action="store_true", help="add <view>:__event_timestamp columns"
    )
    parser.add_argument("--out", required=True, help="Parquet file to write")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    repo = load(args)
    try:
        entities = pq.read_table(args.entities)
    except OSError as err:
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
    pq.write_table(frame, partial, write_page_checksum=True)
    os.replace(partial, args.out)  # never leave a half-written file under the asked name
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
