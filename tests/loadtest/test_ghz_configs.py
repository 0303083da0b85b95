"""The ghz configs in loadtest/ghz run as written: a real method, requests that parse
into its input message, a loopback host, and bounds on count and time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from google.protobuf import descriptor_pool, json_format, message_factory

import ferry.api.registry.v1.registry_pb2
import ferry.api.serving.v1.serving_pb2  # noqa: F401 - registers the services in the pool

CONFIGS = sorted((Path(__file__).parents[2] / "loadtest" / "ghz").glob("*.json"))


def test_there_is_a_config_per_documented_case() -> None:
    names = {path.stem for path in CONFIGS}
    assert {"online_b1", "online_b10", "online_b100", "model_features_b1", "model_version"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_names_a_method_and_its_requests_parse(path: Path) -> None:
    config = json.loads(path.read_text())
    service_name, method_name = config["call"].rsplit(".", 1)
    service = descriptor_pool.Default().FindServiceByName(service_name)
    method = service.methods_by_name[method_name]
    request_class = message_factory.GetMessageClass(method.input_type)
    assert config["data"], "a config without requests"
    for entry in config["data"]:
        request = json_format.ParseDict(entry, request_class())  # unknown fields fail
        assert request.ByteSize() > 0
    assert config["host"].startswith("127.0.0.1:")
    assert config["total"] > 0
    assert config["max-duration"].endswith("s")
    assert config["insecure"] is True


def test_batch_configs_hold_their_batch_size() -> None:
    for batch in (1, 10, 100):
        config = json.loads((CONFIGS[0].parent / f"online_b{batch}.json").read_text())
        for entry in config["data"]:
            for column in entry["entities"].values():
                (values,) = column.values()
                assert len(values["values"]) == batch
