"""The offline store: Parquet files (a file or a folder of them) under a root, local or S3.

A view's source is read with column projection and with the time window pushed down to
Parquet row-group statistics, one bounded batch at a time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs

from ferry.core.errors import SourceError
from ferry.core.redaction import redact_url
from ferry.core.repo import FeatureRepo, FeatureView
from ferry.core.timestamps import to_utc_micros
from ferry.core.types import ValueType

_PARQUET = ds.ParquetFileFormat(
    # Files that carry page checksums (Ferry's own, and the data set generator's) are
    # verified as they are read: 4 KB of damage inside a page decoded to wrong values
    # without it.
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True)
)


@dataclass(frozen=True)
class Window:
    """Event times to read, in µs: ``start <= t <= end`` and, if set, ``t > after``."""

    start: int | None
    end: int
    after: int | None = None


def source_location(repo: FeatureRepo, view: FeatureView) -> str:
    """The path or URI of a view's source."""
    return f"{repo.offline_root.rstrip('/')}/{view.source.path}"


def open_source(repo: FeatureRepo, view: FeatureView) -> ds.Dataset:
    """The view's source as a pyarrow dataset.

    Raises:
        SourceError: the path does not exist or holds no readable Parquet.
    """
    location = source_location(repo, view)
    shown = redact_url(location)  # s3://KEY:SECRET@bucket/... is a form pyarrow reads
    try:
        filesystem, path = pafs.FileSystem.from_uri(
            location if "://" in location else f"file://{location}"
        )
        info = filesystem.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise SourceError(f"view {view.name!r}: source {shown} does not exist")
        dataset = ds.dataset(path, filesystem=filesystem, format=_PARQUET)
    except (OSError, pa.ArrowInvalid) as err:
        raise SourceError(f"view {view.name!r}: cannot read source {shown}: {err}") from err
    if isinstance(filesystem, pafs.LocalFileSystem):
        _confine_links(repo.offline_root, view, [path, *dataset.files])
    return dataset


def _confine_links(root: str, view: FeatureView, paths: list[str]) -> None:
    """The repo file's check that a source stays below the root reads the path's text; a
    symbolic link on the way (to the folder or to a file in it) could still lead out.

    Raises:
        SourceError: naming the first path whose target is outside the root.
    """
    real_root = os.path.realpath(root)
    for path in paths:
        target = os.path.realpath(path)
        if os.path.commonpath([real_root, target]) != real_root:
            raise SourceError(
                f"view {view.name!r}: source {path} leads to {target} through a symbolic "
                f"link, outside the offline root {root}: copy the data below the root, or "
                "set the root above it"
            )


def check_source(repo: FeatureRepo, view: FeatureView) -> list[str]:
    """Every mismatch between a view's declaration and its source's columns and types, and
    every file of the source that is not readable Parquet or whose columns differ."""
    try:
        dataset = open_source(repo, view)
    except SourceError as err:
        return [str(err)]
    return _source_problems(repo, view, dataset)


def open_checked_source(repo: FeatureRepo, view: FeatureView) -> ds.Dataset:
    """``open_source``, then ``check_source`` on the dataset opened, without opening it twice.

    Raises:
        SourceError: the source is missing or unreadable, or every mismatch, in one message.
    """
    dataset = open_source(repo, view)
    problems = _source_problems(repo, view, dataset)
    if problems:
        raise SourceError("\n".join(problems))
    return dataset


def _source_problems(repo: FeatureRepo, view: FeatureView, dataset: ds.Dataset) -> list[str]:
    """Declaration against the first file's schema, then every file's footer, then null
    list elements: each step only when the one before found nothing."""
    return (
        _schema_problems(repo, view, dataset.schema)
        or _file_problems(repo, view, dataset)
        or _null_element_problems(view, dataset)
    )


def _null_element_problems(view: FeatureView, dataset: ds.Dataset) -> list[str]:
    """A list feature's value may be null or empty, but no element of it may be null: the
    wire and the stored row have no null elements, so training would see what serving
    cannot. Row groups whose statistics count no nulls in a list's elements (null and empty
    lists count too) are not read; the others are, for those columns only."""
    lists = [f.name for f in view.features if f.type.element is not None]
    if not lists:
        return []
    for fragment in dataset.get_fragments():
        metadata = fragment.metadata
        for piece in fragment.split_by_row_group():
            group = piece.row_groups[0]
            chunks = metadata.row_group(group.id)
            suspects = [name for name in lists if _may_hold_nulls(chunks, name)]
            if not suspects:
                continue
            row = 0
            for batch in piece.to_batches(columns=suspects, batch_readahead=0):
                for name in suspects:
                    column = batch.column(name)
                    if pc.list_flatten(column).null_count:
                        first = next(i for i, v in enumerate(column.to_pylist()) if v and None in v)
                        return [
                            f"view {view.name!r}: source file {fragment.path}: column "
                            f"{name!r} (feature) holds a null inside a list (row "
                            f"{row + first} of row group {group.id}); a list may be null or "
                            "empty, its elements may not be null"
                        ]
                row += batch.num_rows
    return []


def _may_hold_nulls(chunks: Any, name: str) -> bool:
    """Whether a row group's column chunk of list ``name`` may hold null elements, from
    its statistics (unknown statistics: it may)."""
    for i in range(chunks.num_columns):
        chunk = chunks.column(i)
        if chunk.path_in_schema.startswith(f"{name}."):  # name.list.element
            statistics = chunk.statistics
            return statistics is None or not statistics.has_null_count or statistics.null_count > 0
    return True


def _file_problems(repo: FeatureRepo, view: FeatureView, dataset: ds.Dataset) -> list[str]:
    """The problems of each file of a source folder (footers only): a file that is empty or
    not Parquet, or whose columns differ from the declaration, is named."""
    problems = []
    for fragment in dataset.get_fragments():
        where = f"view {view.name!r}: source file {fragment.path}"
        try:
            schema = fragment.physical_schema
        except (OSError, pa.ArrowException) as err:
            problems.append(f"{where}: not a readable Parquet file: {err}")
            continue
        problems.extend(_schema_problems(repo, view, schema, where))
    return problems


def _schema_problems(
    repo: FeatureRepo, view: FeatureView, schema: pa.Schema, where: str | None = None
) -> list[str]:
    where = where or f"view {view.name!r}: source {redact_url(source_location(repo, view))}"
    expected: list[tuple[str, str, ValueType | None]] = [
        (k.name, "join key", k.type) for k in view.join_keys
    ]
    expected.append((view.source.timestamp_field, "timestamp field", None))
    if view.source.created_timestamp_field:
        expected.append((view.source.created_timestamp_field, "created timestamp field", None))
    expected.extend((f.name, "feature", f.type) for f in view.features)
    problems = []
    for name, role, kind in expected:
        index = schema.get_field_index(name)
        if index < 0:
            problems.append(f"{where}: has no column {name!r} ({role})")
            continue
        found = schema.field(index).type
        want = "timestamp" if kind is None else kind.value
        ok = pa.types.is_timestamp(found) if kind is None else kind.accepts(found)
        if not ok:
            problems.append(f"{where}: column {name!r} ({role}) is {found}, expected {want}")
    return problems


def row_groups(dataset: ds.Dataset, view: FeatureView, window: Window) -> list[ds.Fragment]:
    """The row groups of a source that may hold rows of the window, by their statistics.

    Rows with a null event time are never ruled out, so callers can count them.
    """
    ts = view.source.timestamp_field
    prune = _window_filter(ds.field(ts), window, dataset.schema.field(ts).type)
    return [
        piece
        for fragment in dataset.get_fragments(filter=prune)
        for piece in fragment.split_by_row_group(filter=prune)
    ]


def count_rows(pieces: list[ds.Fragment]) -> int:
    """Rows in the given row groups, from Parquet metadata alone."""
    return sum(rg.num_rows for piece in pieces for rg in piece.row_groups)


class ScanBatch(NamedTuple):
    """One batch of a scan.

    Attributes:
        rows_read: Rows the batch read from the source.
        rows_after_end: Of those, rows whose event time is later than the window's end (in
            a source for "now", rows from the future: a sign of bad timestamps).
        in_window: The rows in the window, and those with a null event time.
    """

    rows_read: int
    rows_after_end: int
    in_window: pa.Table


def scan(
    pieces: list[ds.Fragment], view: FeatureView, window: Window, batch_rows: int
) -> Iterator[ScanBatch]:
    """Yield each batch of at most ``batch_rows`` rows.

    Only the view's columns are read. Rows with a null event time are kept (so callers can
    count them); timestamps come back as timestamp[us, UTC].
    """
    ts = view.source.timestamp_field
    columns = [*view.join_key_names, ts]
    if view.source.created_timestamp_field:
        columns.append(view.source.created_timestamp_field)
    columns.extend(f.name for f in view.features)
    for piece in pieces:
        # No read-ahead: pyarrow's defaults (16 batches, 4 fragments) would make peak
        # memory grow with the number of row groups instead of staying at one batch.
        batches = piece.to_batches(
            columns=columns, batch_size=batch_rows, batch_readahead=0, fragment_readahead=0
        )
        for batch in _decoded(batches, view, piece):
            table = _normalise_times(pa.Table.from_batches([batch]), view)
            times = table[ts]
            keep = pc.or_kleene(pc.is_null(times), _window_mask(times, window))
            after = pc.sum(pc.greater(times, pa.scalar(window.end, pa.timestamp("us", "UTC"))))
            yield ScanBatch(batch.num_rows, after.as_py() or 0, table.filter(keep))


def _decoded(
    batches: Iterator[pa.RecordBatch], view: FeatureView, piece: ds.Fragment
) -> Iterator[pa.RecordBatch]:
    """The batches of one row group; a damaged page (a checksum mismatch, undecodable
    bytes) fails with the file and row group named."""
    try:
        yield from batches
    except (OSError, pa.ArrowException) as err:
        group = piece.row_groups[0].id if piece.row_groups else "?"
        raise SourceError(
            f"view {view.name!r}: source file {piece.path}, row group {group}: cannot be "
            f"decoded (damaged?): {err}",
            reason="SOURCE_UNREADABLE",
            file=piece.path,
            row_group=group,
        ) from err


def _window_filter(field: ds.Expression, window: Window, time_type: pa.DataType) -> ds.Expression:
    def at(micros: int) -> pa.Scalar:
        return pa.scalar(micros, pa.timestamp("us", tz="UTC")).cast(time_type)

    expr = field <= at(window.end)
    if window.start is not None:
        expr = expr & (field >= at(window.start))
    if window.after is not None:
        expr = expr & (field > at(window.after))
    return field.is_null() | expr


def _window_mask(times: pa.ChunkedArray, window: Window) -> pa.ChunkedArray:
    def at(micros: int) -> pa.Scalar:
        return pa.scalar(micros, pa.timestamp("us", tz="UTC"))

    mask = pc.less_equal(times, at(window.end))
    if window.start is not None:
        mask = pc.and_(mask, pc.greater_equal(times, at(window.start)))
    if window.after is not None:
        mask = pc.and_(mask, pc.greater(times, at(window.after)))
    return mask


def _normalise_times(table: pa.Table, view: FeatureView) -> pa.Table:
    names = [view.source.timestamp_field, view.source.created_timestamp_field]
    names += [f.name for f in view.features if f.type is ValueType.TIMESTAMP]
    for name in names:
        if name:
            index = table.schema.get_field_index(name)
            table = table.set_column(index, name, to_utc_micros(table[name]))
    return table
