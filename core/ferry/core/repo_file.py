"""Load a feature repo from its YAML file, reporting every problem at once.

The file::

    project: fraud
    offline_store: {root: data}            # relative to this file, or a URI
    online_store: sqlite:///online.db      # optional default; relative to this file
    entities:
      user: {join_keys: {user_id: int64}}
    feature_views:
      user_stats:
        entities: [user]
        source: {path: user_stats, timestamp_field: event_timestamp,
                 created_timestamp_field: created_timestamp}
        ttl: 2d                             # optional: rows older than this are stale
        features: {txn_count_7d: int64, avg_txn_amount: float}
    feature_services:
      fraud_v1: {features: ["user_stats:*"]}

Problems name the file, the line, the dotted path of the field and what was expected.
"""

from __future__ import annotations

import os
import posixpath
import re
from pathlib import Path

import yaml

from ferry.core.errors import InvalidValueError, Problem, RepoError, UnknownReferenceError
from ferry.core.redaction import redact_url
from ferry.core.repo import (
    Entity,
    Feature,
    FeatureRef,
    FeatureRepo,
    FeatureService,
    FeatureView,
    JoinKey,
    Source,
    expand_refs,
)
from ferry.core.timestamps import parse_duration
from ferry.core.types import JOIN_KEY_TYPES, ValueType

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TYPE_NAMES = ", ".join(t.value for t in ValueType)
_MISSING = "!ferry/missing"
_TOP_FIELDS = (
    "project",
    "description",
    "offline_store",
    "online_store",
    "entities",
    "feature_views",
    "feature_services",
)
_ENTITY_FIELDS = ("join_keys", "description")
_VIEW_FIELDS = ("entities", "source", "ttl", "features", "description")
_SOURCE_FIELDS = ("path", "timestamp_field", "created_timestamp_field")
_FEATURE_FIELDS = ("type", "description")
_SERVICE_FIELDS = ("features", "description")


def load_repo(path: str | os.PathLike[str]) -> FeatureRepo:
    """Read and validate a feature repo file.

    Raises:
        RepoError: listing every problem found, each with file, line and field path.
    """
    file = os.fspath(path)
    try:
        text = Path(file).read_text(encoding="utf-8")
    except OSError as err:
        raise RepoError([Problem(file, 0, "", f"cannot read the file: {err.strerror}")]) from err
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise RepoError(
            [
                Problem(
                    file,
                    line,
                    "",
                    f"not UTF-8 text: byte {err.start} is {err.object[err.start]:#04x}",
                )
            ]
        ) from err
    return parse_repo(text, file)


def parse_repo(text: str, file: str = "<repo>") -> FeatureRepo:
    """Validate the YAML ``text`` of a repo file; relative paths are taken from ``file``'s folder.

    Raises:
        RepoError: listing every problem found.
    """
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        reader = _Reader(file)
        repo = reader.repo(root)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise RepoError([Problem(file, line, "", f"not valid YAML: {err}")]) from err
    except RecursionError as err:  # PyYAML composes nested nodes recursively
        raise RepoError([Problem(file, 0, "", "the YAML is nested too deeply")]) from err
    if reader.problems or repo is None:
        raise RepoError(reader.problems or [Problem(file, 0, "", "the file is empty")])
    return repo


class _Reader:
    """Walks the YAML node tree, building the model and collecting problems."""

    def __init__(self, file: str) -> None:
        self.file = file
        self.base = Path(file).resolve().parent
        self.problems: list[Problem] = []
        self.declared_views: set[str] = set()

    def problem(self, node: yaml.Node | None, path: str, message: str) -> None:
        line = node.start_mark.line + 1 if node is not None else 0
        self.problems.append(Problem(self.file, line, path, message))

    # -- generic node readers -------------------------------------------------

    def fields(
        self, node: yaml.Node | None, path: str, allowed: tuple[str, ...]
    ) -> dict[str, yaml.Node] | None:
        """A mapping with known string keys; unknown or duplicate keys are problems."""
        items = self.mapping(node, path)
        if items is None or node is None:
            return None
        out: dict[str, yaml.Node] = {}
        for key, key_node, value in items:
            if key not in allowed:
                self.problem(
                    key_node,
                    _join(path, key),
                    "unknown field; expected one of: " + ", ".join(allowed),
                )
            else:
                out[key] = value
        for key in allowed:
            # A missing field is reported at the line of the mapping that lacks it.
            out.setdefault(key, yaml.ScalarNode(_MISSING, "", node.start_mark, node.end_mark))
        return out

    def mapping(
        self, node: yaml.Node | None, path: str
    ) -> list[tuple[str, yaml.Node, yaml.Node]] | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, path, f"expected a mapping, found {_kind(node)}")
            return None
        seen: set[str] = set()
        out: list[tuple[str, yaml.Node, yaml.Node]] = []
        for key_node, value in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.problem(key_node, path, "expected a text key")
                continue
            key = str(key_node.value)
            if key in seen:
                self.problem(key_node, _join(path, key), "declared twice")
                continue
            seen.add(key)
            out.append((key, key_node, value))
        return out

    def text(self, node: yaml.Node | None, path: str) -> str | None:
        if not isinstance(node, yaml.ScalarNode) or node.value == "" or _is_null(node):
            self.problem(node, path, f"expected a non-empty text, found {_kind(node)}")
            return None
        return str(node.value)

    def name(self, node: yaml.Node | None, path: str) -> str | None:
        value = self.text(node, path)
        if value is not None and not _NAME.match(value):
            self.problem(node, path, f"expected a name of letters, digits and _, found {value!r}")
            return None
        return value

    def text_list(self, node: yaml.Node | None, path: str) -> list[tuple[str, yaml.Node]]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            self.problem(node, path, f"expected a non-empty list, found {_kind(node)}")
            return []
        out = []
        for i, item in enumerate(node.value):
            value = self.text(item, f"{path}[{i}]")
            if value is not None:
                out.append((value, item))
        return out

    def value_type(self, node: yaml.Node | None, path: str) -> ValueType | None:
        value = self.text(node, path)
        if value is None:
            return None
        try:
            return ValueType(value.replace(" ", ""))
        except ValueError:
            self.problem(node, path, f"expected a type ({_TYPE_NAMES}), found {value!r}")
            return None

    # -- the repo -------------------------------------------------------------

    def repo(self, root: yaml.Node | None) -> FeatureRepo | None:
        if root is None:
            self.problem(None, "", "the file is empty")
            return None
        top = self.fields(root, "", _TOP_FIELDS)
        if top is None:
            return None
        project = self.name(top.get("project"), "project")
        offline_root = self.offline_root(top.get("offline_store"))
        online = top["online_store"]
        online_store = None if _is_null(online) else self.online_store(online)
        entities = self.entities(top.get("entities"))
        views = self.views(top.get("feature_views"), entities)
        services = self.services(top.get("feature_services"), views)
        if project is None or offline_root is None or self.problems:
            return None
        return FeatureRepo(
            project, entities, views, services, offline_root, online_store, self.file
        )

    def offline_root(self, node: yaml.Node | None) -> str | None:
        fields = self.fields(node, "offline_store", ("root",))
        if fields is None:
            return None
        root = self.text(fields.get("root"), "offline_store.root")
        problem = None if root is None else offline_root_problem(root)
        if problem:
            self.problem(fields.get("root"), "offline_store.root", problem)
            return None
        if root is None or "://" in root:
            return root
        return str((self.base / root).resolve())

    def online_store(self, node: yaml.Node) -> str | None:
        url = self.text(node, "online_store")
        if url is None:
            return None
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            return "sqlite:///" + str((self.base / url.removeprefix("sqlite:///")).resolve())
        return url

    def entities(self, node: yaml.Node | None) -> dict[str, Entity]:
        out: dict[str, Entity] = {}
        for name, key_node, value in self.mapping(node, "entities") or []:
            path = f"entities.{name}"
            if not _NAME.match(name):
                self.problem(key_node, path, "expected a name of letters, digits and _")
                continue
            fields = self.fields(value, path, _ENTITY_FIELDS)
            if fields is None:
                continue
            keys, before = [], len(self.problems)
            for key, knode, tnode in (
                self.mapping(fields.get("join_keys"), f"{path}.join_keys") or []
            ):
                kpath = f"{path}.join_keys.{key}"
                if not _NAME.match(key):
                    self.problem(knode, kpath, "expected a name of letters, digits and _")
                kind = self.value_type(tnode, kpath)
                if kind is not None and kind not in JOIN_KEY_TYPES:
                    self.problem(
                        tnode,
                        kpath,
                        f"a join key must be int64, int32 or string, found {kind.value}",
                    )
                elif kind is not None:
                    keys.append(JoinKey(key, kind))
            if not keys and len(self.problems) == before:
                self.problem(fields.get("join_keys"), f"{path}.join_keys", "expected a join key")
            out[name] = Entity(name, tuple(keys), self.description(fields, path))
        if not out and not any(p.path.startswith("entities") for p in self.problems):
            self.problem(node, "entities", "expected at least one entity")
        return out

    def description(self, fields: dict[str, yaml.Node], path: str) -> str:
        node = fields.get("description")
        return (
            "" if node is None or _is_null(node) else (self.text(node, f"{path}.description") or "")
        )

    def views(self, node: yaml.Node | None, entities: dict[str, Entity]) -> dict[str, FeatureView]:
        out: dict[str, FeatureView] = {}
        for name, key_node, value in self.mapping(node, "feature_views") or []:
            self.declared_views.add(name)
            view = self.view(name, key_node, value, entities)
            if view is not None:
                out[name] = view
        return out

    def view(
        self, name: str, key_node: yaml.Node, node: yaml.Node, entities: dict[str, Entity]
    ) -> FeatureView | None:
        path = f"feature_views.{name}"
        if not _NAME.match(name):
            self.problem(key_node, path, "expected a name of letters, digits and _")
        fields = self.fields(node, path, _VIEW_FIELDS)
        if fields is None:
            return None
        before = len(self.problems)
        entity_names: list[str] = []
        join_keys: list[JoinKey] = []
        for entity_name, enode in self.text_list(fields.get("entities"), f"{path}.entities"):
            if entity_name not in entities:
                self.problem(
                    enode,
                    f"{path}.entities",
                    f"unknown entity {entity_name!r}; declared: {', '.join(entities)}",
                )
                continue
            entity_names.append(entity_name)
            join_keys.extend(entities[entity_name].join_keys)
        source = self.source(fields.get("source"), f"{path}.source")
        ttl = None
        if not _is_null(fields["ttl"]):
            ttl_text = self.text(fields["ttl"], f"{path}.ttl")
            try:
                ttl = parse_duration(ttl_text) if ttl_text is not None else None
            except InvalidValueError as err:
                self.problem(fields["ttl"], f"{path}.ttl", str(err))
        features = self.features(fields.get("features"), f"{path}.features")
        reserved = {k.name: "a join key" for k in join_keys}
        if source is not None:
            reserved[source.timestamp_field] = "the timestamp field"
            if source.created_timestamp_field:
                reserved[source.created_timestamp_field] = "the created timestamp field"
        for feature, fnode in features:
            if feature.name in reserved:
                self.problem(
                    fnode,
                    f"{path}.features.{feature.name}",
                    f"a feature cannot have the name of {reserved[feature.name]}",
                )
        names = [k.name for k in join_keys]
        if len(set(names)) != len(names):
            self.problem(
                fields.get("entities"), f"{path}.entities", "two entities share a join key name"
            )
        if len(self.problems) > before or source is None:
            return None
        return FeatureView(
            name,
            tuple(entity_names),
            tuple(join_keys),
            source,
            ttl,
            tuple(f for f, _ in features),
            self.description(fields, path),
        )

    def source(self, node: yaml.Node | None, path: str) -> Source | None:
        fields = self.fields(node, path, _SOURCE_FIELDS)
        if fields is None:
            return None
        source_path = self.text(fields.get("path"), f"{path}.path")
        ts = self.text(fields.get("timestamp_field"), f"{path}.timestamp_field")
        created_node = fields.get("created_timestamp_field")
        created = None
        if created_node is not None and not _is_null(created_node):
            created = self.text(created_node, f"{path}.created_timestamp_field")
        if source_path is not None and not _inside_root(source_path):
            self.problem(
                fields.get("path"),
                f"{path}.path",
                f"{source_path!r} leaves the offline root: give a path below it (no leading "
                "'/', no '..' that climbs out, no URL)",
            )
            source_path = None
        if source_path is None or ts is None:
            return None
        if created == ts:
            self.problem(
                created_node, f"{path}.created_timestamp_field", "must differ from timestamp_field"
            )
        return Source(source_path, ts, created)

    def features(self, node: yaml.Node | None, path: str) -> list[tuple[Feature, yaml.Node]]:
        out = []
        items = self.mapping(node, path)
        if items is not None and not items:
            self.problem(node, path, "expected at least one feature")
        for name, key_node, value in items or []:
            fpath = f"{path}.{name}"
            if not _NAME.match(name):
                self.problem(key_node, fpath, "expected a name of letters, digits and _")
                continue
            description = ""
            type_node: yaml.Node | None = value
            if isinstance(value, yaml.MappingNode):
                fields = self.fields(value, fpath, _FEATURE_FIELDS) or {}
                type_node = fields.get("type")
                description = self.description(fields, fpath)
                fpath = f"{fpath}.type"
            kind = self.value_type(type_node, fpath)
            if kind is not None:
                out.append((Feature(name, kind, description), key_node))
        return out

    def services(
        self, node: yaml.Node | None, views: dict[str, FeatureView]
    ) -> dict[str, FeatureService]:
        out: dict[str, FeatureService] = {}
        if node is None or _is_null(node):
            return out
        for name, key_node, value in self.mapping(node, "feature_services") or []:
            path = f"feature_services.{name}"
            if not _NAME.match(name):
                self.problem(key_node, path, "expected a name of letters, digits and _")
            fields = self.fields(value, path, _SERVICE_FIELDS)
            if fields is None:
                continue
            refs: list[FeatureRef] = []
            for ref, ref_node in self.text_list(fields.get("features"), f"{path}.features"):
                if ref.partition(":")[0] in self.declared_views - views.keys():
                    continue  # the view itself is invalid and already reported
                try:
                    refs.extend(expand_refs(views, [ref]))
                except UnknownReferenceError as err:
                    self.problem(ref_node, f"{path}.features", str(err))
            duplicates = sorted({str(r) for r in refs if refs.count(r) > 1})
            if duplicates:
                self.problem(
                    fields.get("features"),
                    f"{path}.features",
                    "features listed twice: " + ", ".join(duplicates),
                )
            out[name] = FeatureService(name, tuple(refs), self.description(fields, path))
        return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def offline_root_problem(root: str) -> str | None:
    """What is wrong with an offline root, if anything: Ferry reads local folders and S3
    (other schemes pyarrow knows, such as gs://, were tried and hung on the network)."""
    scheme, sep, rest = root.partition("://")
    if not sep:
        return None
    shown = redact_url(root)
    if scheme != "s3":
        return f"{shown!r}: the offline store is a local folder or s3://BUCKET/PREFIX"
    if not rest.split("/", 1)[0].rpartition("@")[2]:
        return f"{shown!r}: expected s3://BUCKET/PREFIX"
    return None


def _inside_root(source_path: str) -> bool:
    """Whether a source path stays below the offline root, read as a path on any store
    (local folders and S3 prefixes alike, so purely by its text)."""
    if "://" in source_path or source_path.startswith(("/", "\\")) or "\\" in source_path:
        return False
    normal = posixpath.normpath(source_path)
    return normal != ".." and not normal.startswith("../") and normal != "."


def _is_null(node: yaml.Node) -> bool:
    """Explicitly null (``~``, ``null``, nothing) or missing altogether."""
    return isinstance(node, yaml.ScalarNode) and node.tag in ("tag:yaml.org,2002:null", _MISSING)


def _kind(node: yaml.Node | None) -> str:
    if node is None or node.tag == _MISSING:
        return "nothing (the field is missing)"
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    if _is_null(node):
        return "null"
    return repr(node.value)
