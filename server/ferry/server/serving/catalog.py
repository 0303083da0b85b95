"""What the server knows of the feature repo, prepared for requests.

A ``Catalog`` is immutable and built once per (re)load of the repo file; SIGHUP swaps in a
new one, so a request always sees one consistent repo. Resolving a feature selection
(references or a service) into a ``FeaturePlan`` costs a few microseconds per feature, so
plans are cached per selection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ferry.core.codec import RowCodec
from ferry.core.repo import FeatureRef, FeatureRepo, FeatureView, check_distinct
from ferry.core.types import ValueType
from ferry.stores.base import ViewTable, check_distinct_prefixes
from ferry.wire import packed

_MAX_CACHED_PLANS = 4096


@dataclass(frozen=True)
class ViewSlot:
    """The part of a request served by one view.

    Attributes:
        view: The view.
        table: Its identity in the online store.
        codec: Decoder of its rows.
        picks: Indexes into the decoded row's values, one per requested feature of the view.
        outputs: Position in the response of each of those features.
    """

    view: FeatureView
    table: ViewTable
    codec: RowCodec
    picks: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class FeaturePlan:
    """How to serve one feature selection.

    Attributes:
        names: Response column names, ``view:feature``, in request order.
        types: The features' types, aligned with ``names``.
        slots: One per view involved, in order of first appearance.
        join_keys: Every join key any slot needs, with its type.
        encoders: Per response column, its wire encoder (name and type encoded once).
    """

    names: tuple[str, ...]
    types: tuple[ValueType, ...]
    slots: tuple[ViewSlot, ...]
    join_keys: dict[str, ValueType]
    encoders: tuple[packed.ColumnEncoder, ...]


class Catalog:
    """A loaded repo with codecs and cached plans."""

    def __init__(self, repo: FeatureRepo) -> None:
        self.repo = repo
        self.codecs = {name: RowCodec(view.features) for name, view in repo.views.items()}
        self.tables = {
            name: ViewTable(repo.project, name, view.ttl_micros)
            for name, view in repo.views.items()
        }
        check_distinct_prefixes(repo.project, repo.views)
        self.schemas_recorded: set[str] = set()
        """Views whose schema this process has recorded in the store (PushFeatures does it
        before its first write of a view, see ``ferry.stores.schemas``)."""
        self._plans: dict[tuple[str, ...] | str, FeaturePlan] = {}

    def plan_for_refs(self, refs: Sequence[str]) -> FeaturePlan:
        """The plan of explicit references (``view:feature``, ``view:*``).

        Raises:
            UnknownFeatureError: a reference is malformed or names nothing declared.
        """
        key = tuple(refs)
        plan = self._plans.get(key)
        if plan is None:
            plan = self._remember(key, self._plan(self.repo.resolve(refs)))
        return plan

    def plan_for_service(self, name: str) -> FeaturePlan:
        """The plan of a feature service.

        Raises:
            UnknownFeatureServiceError: no such service.
        """
        plan = self._plans.get(name)
        if plan is None:
            plan = self._remember(name, self._plan(self.repo.service(name).refs))
        return plan

    def _remember(self, key: tuple[str, ...] | str, plan: FeaturePlan) -> FeaturePlan:
        if len(self._plans) >= _MAX_CACHED_PLANS:
            self._plans.clear()
        self._plans[key] = plan
        return plan

    def _plan(self, refs: Sequence[FeatureRef]) -> FeaturePlan:
        check_distinct(refs)
        names = [str(r) for r in refs]
        by_view: dict[str, list[tuple[int, int]]] = {}
        types = []
        for position, ref in enumerate(refs):
            view = self.repo.views[ref.view]
            index = next(i for i, f in enumerate(view.features) if f.name == ref.feature)
            by_view.setdefault(ref.view, []).append((index, position))
            types.append(view.features[index].type)
        slots = []
        join_keys: dict[str, ValueType] = {}
        for view_name, picks in by_view.items():
            view = self.repo.views[view_name]
            for key in view.join_keys:
                join_keys[key.name] = key.type
            slots.append(
                ViewSlot(
                    view,
                    self.tables[view_name],
                    self.codecs[view_name],
                    tuple(i for i, _ in picks),
                    tuple(p for _, p in picks),
                )
            )
        encoders = tuple(packed.ColumnEncoder(n, t) for n, t in zip(names, types, strict=True))
        return FeaturePlan(tuple(names), tuple(types), tuple(slots), join_keys, encoders)
