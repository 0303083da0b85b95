"""Clients in other languages, as docs/other-languages.md shows them, call a real server:
health, GetOnlineFeatures, and an error whose google.rpc.ErrorInfo reason they read. Their
values equal the Python client's.

- Go: code generated from protos/ by protoc and Debian's Go plugins, compiled in GOPATH mode
  against Debian's gRPC and protobuf libraries (no network).
- Node.js: @grpc/grpc-js loading protos/ at run time, its packages from the npm registry.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ferry.client import AsyncFerryClient
from ferry.server import FerryServer

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def go_client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """examples/go/ferry_get built against freshly generated code."""
    missing = [
        tool
        for tool in ("go", "protoc", "protoc-gen-go", "protoc-gen-go-grpc")
        if not shutil.which(tool)
    ]
    assert not missing, f"missing {missing}: bash scripts/install-go.sh installs them"
    gopath = tmp_path_factory.mktemp("gopath")
    subprocess.run(["bash", str(ROOT / "scripts" / "gen-go.sh"), str(gopath)], check=True)
    binary = gopath / "ferry_get"
    environment = {
        **os.environ,
        "GOPATH": f"{gopath}:/usr/share/gocode",
        "GO111MODULE": "off",  # Debian's libraries are a GOPATH, and there is no network
        "GOCACHE": str(gopath / "cache"),
        "GOFLAGS": "",
    }
    done = subprocess.run(
        ["go", "build", "-o", str(binary), "./examples/go/ferry_get"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return binary


@pytest.fixture(scope="module")
def node_client(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """examples/node/ferry_get.js with its packages installed beside it."""
    assert shutil.which("node"), "Node.js is needed"
    assert shutil.which("npm"), "npm is needed"
    work = tmp_path_factory.mktemp("node")
    for name in ("package.json", "ferry_get.js"):
        shutil.copy(ROOT / "examples" / "node" / name, work / name)
    subprocess.run(
        ["npm", "install", "--silent", "--no-audit", "--no-fund"],
        cwd=work,
        check=True,
        timeout=300,
    )
    return ["node", str(work / "ferry_get.js"), "--protos", str(ROOT / "protos")]


@pytest.mark.parametrize("language", ["go", "node"])
async def test_a_client_in_another_language_gets_what_the_python_client_gets(
    language: str, server: FerryServer, request: pytest.FixtureRequest
) -> None:
    command = (
        [str(request.getfixturevalue("go_client"))]
        if language == "go"
        else request.getfixturevalue("node_client")
    )
    target = f"127.0.0.1:{server.port}"
    done = await asyncio.to_thread(
        subprocess.run,
        [*command, "--target" if language == "node" else "-target", target],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[0] == {"kind": "health", "status": "SERVING"}
    code = "NotFound" if language == "go" else "NOT_FOUND"
    assert lines[-1] == {"kind": "error", "code": code, "reason": "UNKNOWN_FEATURE_SERVICE"}
    async with AsyncFerryClient(target) as client:
        expected = await client.get_online_features(
            feature_service="fraud_v1",
            entities={"user_id": [1, 2], "merchant_id": ["m0000001", "m0000002"]},
        )
    features = lines[1:-1]
    compared = 0
    assert [f["name"] for f in features] == expected.names
    for got in features:
        want = expected[got["name"]]
        assert got["statuses"] == [f"VALUE_STATUS_{s}" for s in want.statuses]
        served = [
            v if s != "OUTSIDE_MAX_AGE" else w
            for v, w, s in zip(want.values, want.stale_values, want.statuses, strict=True)
        ]
        # The wire values: a null (or missing row) is the type's zero value there.
        for value, status, wire in zip(served, want.statuses, got["values"], strict=True):
            if status in ("PRESENT", "OUTSIDE_MAX_AGE"):
                if isinstance(value, int) and isinstance(wire, str):
                    wire = int(wire)  # Node gives int64 as strings: a double would round
                assert wire == pytest.approx(value), got["name"]
                compared += 1
    assert compared >= len(features)  # at least one value per feature on average
