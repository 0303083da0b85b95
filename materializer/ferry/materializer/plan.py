"""Which window of event time each view's materialization covers."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ferry.core.errors import MaterializationError
from ferry.core.repo import FeatureRepo, FeatureView
from ferry.core.timestamps import format_micros
from ferry.stores.offline import Window


@dataclass(frozen=True)
class ViewPlan:
    """One view to materialize over one window; the watermark becomes ``window.end``."""

    view: FeatureView
    window: Window


def select_views(repo: FeatureRepo, names: Sequence[str] | None) -> list[FeatureView]:
    """The named views (all when ``names`` is empty), in repo order.

    Raises:
        UnknownReferenceError: a name that is not a view.
    """
    if not names:
        return list(repo.views.values())
    wanted = {repo.view(name).name for name in names}
    return [v for v in repo.views.values() if v.name in wanted]


def plan_window(views: Sequence[FeatureView], start: int, end: int) -> list[ViewPlan]:
    """Plans for an explicit window ``start <= event time <= end``.

    Rows older than the TTL at ``end`` are left out as well: they are not the as-of value at
    ``end`` of anything, and a newer row of the same entity may exist before ``start``.

    Raises:
        MaterializationError: ``start`` is after ``end``.
    """
    if start > end:
        raise MaterializationError(
            f"--start {format_micros(start)} is after --end {format_micros(end)}"
        )
    return [ViewPlan(v, _window(v, start, end)) for v in views]


def plan_incremental(
    views: Sequence[FeatureView], watermarks: Mapping[str, int], end: int
) -> list[ViewPlan]:
    """Plans that start each view at its watermark, or at ``end - ttl`` on a first run.

    Raises:
        MaterializationError: a view has neither watermark nor TTL (nothing bounds its
            start), or its watermark is after ``end``; every such view is named.
    """
    plans, problems = [], []
    for view in views:
        start = watermarks.get(view.name)
        if start is None and view.ttl_micros is None:
            problems.append(
                f"view {view.name!r} has no watermark and no ttl to start from; run "
                "`ferry materialize` with --start first, or give the view a ttl"
            )
            continue
        if start is None:
            start = end - (view.ttl_micros or 0)
        if start > end:
            problems.append(
                f"view {view.name!r} is already materialized up to {format_micros(start)}, "
                f"after --end {format_micros(end)}"
            )
            continue
        plans.append(ViewPlan(view, _window(view, start, end)))
    if problems:
        raise MaterializationError("; ".join(problems))
    return plans


def _window(view: FeatureView, start: int, end: int) -> Window:
    after = end - view.ttl_micros if view.ttl_micros is not None else None
    return Window(start=start, end=end, after=after)
