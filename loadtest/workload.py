"""Request data for load tests, drawn from a feature repo's own offline data.

A workload is a set of requests for one method: entity rows sampled from the join-key values
found in the offline sources of the views the requested features come from (so hits are
real stored entities), with a share of misses (values no source holds) and either uniform
or Zipf-skewed popularity (a few hot keys, as in production traffic). Requests are
deterministic for a seed.

Written out three ways: serialized bytes (our load generator, h2load bodies), and proto3
JSON (ghz ``data-file``):

    python loadtest/workload.py samples/fraud/feature_repo.yaml --batch 100 \
        --skew zipf --json loadtest/ghz/data/online_b100.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pyarrow.compute as pc
from google.protobuf import json_format

from ferry.api.registry.v1 import registry_pb2
from ferry.api.serving.v1 import serving_pb2
from ferry.core import FeatureRepo, ValueType, load_repo
from ferry.stores import open_source

SERVING = "ferry.api.serving.v1.ServingService"
REGISTRY = "ferry.api.registry.v1.RegistryService"
METHODS = {
    "online": f"/{SERVING}/GetOnlineFeatures",
    "model": f"/{SERVING}/GetModelFeatures",
    "version": f"/{REGISTRY}/GetModelVersion",
    "stream": f"/{SERVING}/StreamOnlineFeatures",
}
_INTEGER_KEYS = {ValueType.INT64, ValueType.INT32}
_MAX_POOL = 1_000_000
_D = TypeVar("_D")


@dataclass(frozen=True)
class Workload:
    """What requests to make.

    Attributes:
        kind: ``online`` (GetOnlineFeatures), ``model`` (GetModelFeatures), ``version``
            (GetModelVersion) or ``stream`` (GetOnlineFeatures lookups as
            StreamOnlineFeatures messages).
        feature_service: The service whose features are asked for (and whose join keys are
            sampled, also for ``model``).
        batch: Entity rows per request.
        hit_ratio: Share of entity rows whose keys exist in the offline data.
        skew: ``uniform`` or ``zipf`` popularity of the existing keys.
        zipf_s: Zipf exponent: the key of rank r is drawn with weight 1/r**s.
        distinct: How many different requests to cycle through.
        model: Model name for ``model`` and ``version``.
        alias: Alias the model is resolved by for ``model`` and ``version``.
        seed: Seed of every random choice.
    """

    kind: str = "online"
    feature_service: str = "fraud_v1"
    batch: int = 1
    hit_ratio: float = 0.9
    skew: str = "uniform"
    zipf_s: float = 1.1
    distinct: int = 256
    model: str = "fraud-detector"
    alias: str = "champion"
    seed: int = 1

    @property
    def method(self) -> str:
        """The full gRPC method path."""
        return METHODS[self.kind]


def key_pools(repo: FeatureRepo, service: str) -> dict[str, tuple[ValueType, list[Any]]]:
    """Each join key of a service's views: its type and the distinct values in the sources.

    Values are read from the views' offline sources (join-key columns only), at most
    ``_MAX_POOL`` per key, in a stable (sorted) order so ranks are reproducible.
    """
    views = {ref.view for ref in repo.service(service).refs}
    pools: dict[str, tuple[ValueType, list[Any]]] = {}
    for name in sorted(views):
        view = repo.views[name]
        for key in view.join_keys:
            if key.name in pools:
                continue
            column = open_source(repo, view).to_table(columns=[key.name])[key.name]
            values = pc.unique(column.drop_null()).sort()
            pools[key.name] = (key.type, values.slice(0, _MAX_POOL).to_pylist())
    return pools


def entity_rows(
    pools: dict[str, tuple[ValueType, list[Any]]], workload: Workload, rng: np.random.Generator
) -> dict[str, tuple[ValueType, list[Any]]]:
    """One request's entity columns: ``batch`` values per join key."""
    out = {}
    for name, (kind, values) in pools.items():
        if not values:
            raise SystemExit(f"the offline data holds no values of join key {name!r}")
        if workload.skew == "zipf":
            weights = 1.0 / np.arange(1, len(values) + 1) ** workload.zipf_s
            picks = rng.choice(len(values), size=workload.batch, p=weights / weights.sum())
        else:
            picks = rng.integers(0, len(values), size=workload.batch)
        hits = rng.random(workload.batch) < workload.hit_ratio
        column = [
            values[int(i)] if hit else _missing(kind, values, int(i))
            for i, hit in zip(picks, hits, strict=True)
        ]
        out[name] = (kind, column)
    return out


def _missing(kind: ValueType, values: list[Any], salt: int) -> Any:
    """A key value that no source holds (the pool is sorted, so past its end)."""
    if kind in _INTEGER_KEYS:
        return values[-1] + 1 + salt
    return f"ferry-missing-{salt}"


def build(repo: FeatureRepo, workload: Workload) -> list[Any]:
    """The workload's distinct request messages."""
    if workload.kind == "version":
        return [
            registry_pb2.GetModelVersionRequest(
                name=workload.model,
                selector=registry_pb2.ModelSelector(alias=workload.alias),
            )
        ]
    pools = key_pools(repo, workload.feature_service)
    rng = np.random.default_rng(workload.seed)
    requests = []
    for _ in range(workload.distinct):
        if workload.kind == "model":
            request: Any = serving_pb2.GetModelFeaturesRequest(
                model_name=workload.model,
                selector=registry_pb2.ModelSelector(alias=workload.alias),
            )
        else:
            request = serving_pb2.GetOnlineFeaturesRequest(feature_service=workload.feature_service)
        for name, (kind, column) in entity_rows(pools, workload, rng).items():
            entity = request.entities[name]
            if kind in _INTEGER_KEYS:
                getattr(entity, f"{kind.value}_values").values.extend(column)
            else:
                entity.string_values.values.extend(column)
        if workload.kind == "stream":
            request = serving_pb2.StreamOnlineFeaturesRequest(request=request)
        requests.append(request)
    return requests


def payloads(repo: FeatureRepo, workload: Workload) -> list[bytes]:
    """The workload's requests, serialized."""
    return [r.SerializeToString() for r in build(repo, workload)]


def as_json(requests: Sequence[Any]) -> list[dict[str, Any]]:
    """Proto3 JSON of each request, as ghz reads a data file."""
    return [json_format.MessageToDict(r) for r in requests]


def ghz_config(workload: Workload, requests: Sequence[Any], target: str) -> dict[str, Any]:
    """A ghz run of this workload: bounded in count and time, methods found by reflection."""
    return {
        "call": workload.method.strip("/").replace("/", "."),
        "host": target,
        "insecure": True,
        "total": 20_000,
        "max-duration": "30s",
        "concurrency": 16,
        "connections": 2,
        "timeout": "5s",
        "data": as_json(requests),
    }


def load(repo_file: str, offline_root: str | None) -> FeatureRepo:
    """A repo file, its offline root overridden by ``offline_root`` or else
    ``$FERRY_OFFLINE_ROOT``, as ``ferry`` does."""
    repo = load_repo(repo_file)
    offline_root = offline_root or os.environ.get("FERRY_OFFLINE_ROOT")
    if offline_root:
        root = offline_root if "://" in offline_root else os.path.abspath(offline_root)
        repo = dataclasses.replace(repo, offline_root=root)
    return repo


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The workload's command-line flags (shared with the load generator)."""
    defaults = Workload()
    parser.add_argument("--kind", choices=sorted(METHODS), default=defaults.kind)
    parser.add_argument("--feature-service", default=defaults.feature_service)
    parser.add_argument("--batch", type=int, default=defaults.batch)
    parser.add_argument("--hit-ratio", type=float, default=defaults.hit_ratio)
    parser.add_argument("--skew", choices=["uniform", "zipf"], default=defaults.skew)
    parser.add_argument("--zipf-s", type=float, default=defaults.zipf_s)
    parser.add_argument("--distinct", type=int, default=defaults.distinct)
    parser.add_argument("--model", default=defaults.model)
    parser.add_argument("--alias", default=defaults.alias)
    parser.add_argument("--seed", type=int, default=defaults.seed)


def from_arguments(args: argparse.Namespace) -> Workload:
    """The workload the parsed flags describe."""
    if not 0 <= args.hit_ratio <= 1:
        raise SystemExit(f"--hit-ratio must be within 0..1, not {args.hit_ratio}")
    if args.batch < 1:
        raise SystemExit(f"--batch must be at least 1, not {args.batch}")
    return from_namespace(Workload, args)


def from_namespace(cls: type[_D], args: argparse.Namespace) -> _D:
    """A dataclass whose every field is the parsed flag of the same name."""
    return cls(**{f.name: getattr(args, f.name) for f in dataclasses.fields(cls)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repo", help="the feature repo file")
    parser.add_argument("--offline-root", help="override the repo's offline store root")
    add_arguments(parser)
    parser.add_argument("--json", type=Path, help="write proto3 JSON (a ghz data file) here")
    parser.add_argument("--binary", type=Path, help="write the first request's bytes here")
    parser.add_argument(
        "--ghz-config", type=Path, help="write a ghz config (requests inline) for this case here"
    )
    parser.add_argument("--target", default="127.0.0.1:6570", help="the ghz config's host")
    args = parser.parse_args()
    workload = from_arguments(args)
    requests = build(load(args.repo, args.offline_root), workload)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(as_json(requests), indent=1) + "\n")
    if args.ghz_config:
        config = ghz_config(workload, requests, args.target)
        args.ghz_config.parent.mkdir(parents=True, exist_ok=True)
        args.ghz_config.write_text(json.dumps(config, indent=1) + "\n")
    if args.binary:
        args.binary.write_bytes(requests[0].SerializeToString())
    print(json.dumps({"method": workload.method, "requests": len(requests)}))


if __name__ == "__main__":
    main()
