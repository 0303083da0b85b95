"""One N-th of a materialization: shards split by row group, watermarks that move only when
every shard of the window has finished.

A shard takes every N-th row group of each view's source (in the dataset's order, which is
the same for every shard), so each reads about 1/N of the data, not all of it through a
filter. Writes are timestamp-conditional, so shards in any order, any of them retried,
store what one run would.

Watermarks: a shard that finishes raises its own (``VIEW@shard-I-of-N``) to the window's
end, then the view's to the least of the N shard watermarks once all N have one: the view's
watermark reaches ``end`` only when the last shard of the window is done. If the last job's
shards did not all finish, the view's watermark is where it was, so ``materialize-incremental``
starts from there again and redoes the window (rows already written are skipped as not
newer): nothing is lost, some work is repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

from ferry.core.errors import MaterializationError
from ferry.stores.base import OnlineStore

_T = TypeVar("_T")


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` (from 0) of ``count``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise MaterializationError(
                f"shard {self.index} of {self.count}: the index must be 0 to {self.count - 1}"
            )

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def take(self, pieces: list[_T]) -> list[_T]:
        """This shard's part: every ``count``-th piece from ``index``."""
        return pieces[self.index :: self.count]

    def watermark_name(self, view: str, index: int | None = None) -> str:
        return f"{view}@shard-{self.index if index is None else index}-of-{self.count}"


async def raise_watermark(
    store: OnlineStore, project: str, view: str, end: int, shard: Shard | None
) -> None:
    """After a view's writes are all acknowledged: raise its watermark to ``end`` (unsharded),
    or this shard's, and the view's to the least of all N once every shard has one."""
    if shard is None:
        await store.write_watermark(project, view, end)
        return
    await store.write_watermark(project, shard.watermark_name(view), end)
    names = [shard.watermark_name(view, i) for i in range(shard.count)]
    marks = await store.read_watermarks(project, names)
    if len(marks) == shard.count:
        await store.write_watermark(project, view, min(marks.values()))
