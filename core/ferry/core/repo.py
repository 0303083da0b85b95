"""The feature repo model: entities, feature views and feature services, once loaded.

Instances are immutable and already validated; build them with ``load_repo``
(``ferry.core.repo_file``), which reports every problem of a file at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ferry.core.errors import (
    UnknownFeatureError,
    UnknownFeatureServiceError,
    UnknownFeatureViewError,
)
from ferry.core.types import ValueType


@dataclass(frozen=True)
class JoinKey:
    """A typed column that identifies an entity (e.g. ``user_id: int64``)."""

    name: str
    type: ValueType


@dataclass(frozen=True)
class Entity:
    """Something features describe, identified by one or more join keys."""

    name: str
    join_keys: tuple[JoinKey, ...]
    description: str = ""


@dataclass(frozen=True)
class Feature:
    """A typed value of a feature view."""

    name: str
    type: ValueType
    description: str = ""


@dataclass(frozen=True)
class Source:
    """Where a view's rows live in the offline store.

    Attributes:
        path: Parquet file or folder, relative to the offline store root.
        timestamp_field: Column with each row's event time.
        created_timestamp_field: Column with the time the row was written; it breaks ties
            between rows of the same event time (the later created row wins). None when the
            source has none, in which case such ties are broken arbitrarily.
    """

    path: str
    timestamp_field: str
    created_timestamp_field: str | None = None


@dataclass(frozen=True)
class FeatureView:
    """A group of features of the same entities, read from one source.

    Attributes:
        name: Unique within the project.
        entities: Names of the entities the view is keyed by.
        join_keys: The entities' join keys, in entity order: the online key's order.
        source: Where rows come from.
        ttl_micros: How long a row stays valid after its event time, in microseconds. None
            means forever.
        features: The features, in declared order.
    """

    name: str
    entities: tuple[str, ...]
    join_keys: tuple[JoinKey, ...]
    source: Source
    ttl_micros: int | None
    features: tuple[Feature, ...]
    description: str = ""
    _by_name: Mapping[str, Feature] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {f.name: f for f in self.features})

    @property
    def join_key_names(self) -> tuple[str, ...]:
        """The join keys' column names, in key order."""
        return tuple(k.name for k in self.join_keys)

    def feature(self, name: str) -> Feature:
        """The feature called ``name``.

        Raises:
            UnknownFeatureError: the view declares no such feature.
        """
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownFeatureError(
                f"feature view {self.name!r} has no feature {name!r}; it has: "
                + ", ".join(f.name for f in self.features),
                feature_view=self.name,
                feature=name,
            ) from None


@dataclass(frozen=True)
class FeatureRef:
    """One feature of one view, written ``view:feature``."""

    view: str
    feature: str

    def __str__(self) -> str:
        return f"{self.view}:{self.feature}"


@dataclass(frozen=True)
class FeatureService:
    """A named, ordered set of features, typically what one model was trained with."""

    name: str
    refs: tuple[FeatureRef, ...]
    description: str = ""


@dataclass(frozen=True)
class FeatureRepo:
    """A validated feature repo.

    Attributes:
        project: Namespace of every online key, so projects can share a store.
        entities: By name.
        views: By name, in declared order.
        services: By name.
        offline_root: Root of the offline store (a local path, absolute once loaded, or a
            URI); view sources are relative to it.
        online_store: Default online store URL, or None to require one at run time.
        path: The file the repo was loaded from ("" when built in code).
    """

    project: str
    entities: Mapping[str, Entity]
    views: Mapping[str, FeatureView]
    services: Mapping[str, FeatureService]
    offline_root: str
    online_store: str | None = None
    path: str = ""

    def view(self, name: str) -> FeatureView:
        """The view called ``name``.

        Raises:
            UnknownFeatureViewError: no such view.
        """
        try:
            return self.views[name]
        except KeyError:
            raise UnknownFeatureViewError(
                f"unknown feature view {name!r}; declared: " + ", ".join(self.views),
                feature_view=name,
            ) from None

    def service(self, name: str) -> FeatureService:
        """The feature service called ``name``.

        Raises:
            UnknownFeatureServiceError: no such service.
        """
        try:
            return self.services[name]
        except KeyError:
            raise UnknownFeatureServiceError(
                f"unknown feature service {name!r}; declared: " + ", ".join(self.services),
                feature_service=name,
            ) from None

    def resolve(self, refs: Sequence[str]) -> tuple[FeatureRef, ...]:
        """Parse ``view:feature`` and ``view:*`` references into features, in order.

        Raises:
            UnknownFeatureError: a reference is malformed or names an undeclared view or
                feature.
        """
        return expand_refs(self.views, refs)


def check_distinct(refs: Sequence[FeatureRef]) -> None:
    """Serving and training refuse the same feature asked for twice (one column each).

    Raises:
        UnknownFeatureError: reason DUPLICATE_FEATURE, naming them.
    """
    names = [str(r) for r in refs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UnknownFeatureError(
            "features requested twice: " + ", ".join(duplicates),
            reason="DUPLICATE_FEATURE",
            features=", ".join(duplicates),
        )


def expand_refs(views: Mapping[str, FeatureView], refs: Sequence[str]) -> tuple[FeatureRef, ...]:
    """Expand references against ``views``; see ``FeatureRepo.resolve``."""
    out: list[FeatureRef] = []
    for ref in refs:
        view_name, sep, feature_name = ref.partition(":")
        if not sep or not view_name or not feature_name:
            raise UnknownFeatureError(
                f"feature reference {ref!r} is not of the form view:feature or view:*",
                reason="MALFORMED_FEATURE_REFERENCE",
                feature_ref=ref,
            )
        if view_name not in views:
            raise UnknownFeatureError(
                f"feature reference {ref!r}: unknown feature view {view_name!r}",
                feature_ref=ref,
                feature_view=view_name,
            )
        view = views[view_name]
        if feature_name == "*":
            out.extend(FeatureRef(view.name, f.name) for f in view.features)
        else:
            try:
                view.feature(feature_name)
            except UnknownFeatureError as err:
                raise UnknownFeatureError(
                    f"feature reference {ref!r}: {err}", feature_ref=ref, **err.metadata
                ) from None
            out.append(FeatureRef(view.name, feature_name))
    return tuple(out)
