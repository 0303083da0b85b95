"""The composition root: settings become opened parts, and bad settings are refused
before anything is opened."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from ferry.cli.compose import (
    FeaturesConfig,
    RegistryConfig,
    open_features,
    open_registry,
    server_builder,
)
from ferry.core import FerryError
from ferry.server import FerryServer, ServerConfig
from tests.e2e.fraud import SAMPLE_REPO


def test_a_server_needs_features_or_a_registry() -> None:
    with pytest.raises(FerryError, match="needs features to serve, a model registry, or both"):
        FerryServer(ServerConfig())


def test_a_webhook_receiver_needs_a_secret(tmp_path: Path) -> None:
    config = RegistryConfig(f"sqlite:///{tmp_path / 'mlflow.db'}", webhook_port=0)
    with pytest.raises(FerryError, match="needs a secret"):
        open_registry(config)


async def test_features_are_opened_from_the_repo_file_and_store_url(tmp_path: Path) -> None:
    features = open_features(FeaturesConfig(str(SAMPLE_REPO), f"sqlite:///{tmp_path / 'o.db'}"))
    try:
        assert set(features.load_repo().views) >= {"user_stats", "merchant_stats"}
        assert str(SAMPLE_REPO) in features.description
    finally:
        await features.store.close()


def test_the_server_builder_pickles_for_worker_processes(tmp_path: Path) -> None:
    builder = server_builder(FeaturesConfig(str(SAMPLE_REPO), "sqlite:///x.db"), None)
    assert pickle.loads(pickle.dumps(builder)).args == builder.args
