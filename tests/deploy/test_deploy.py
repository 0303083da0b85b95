"""The deployment files hold together: the Kubernetes manifests parse, every Ferry command
in them and in the Dockerfile parses with Ferry's own argument parser, and the image's
entry point runs from the wheel installed in a fresh virtualenv (there is no container
engine here to build the image itself)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from ferry.cli import arguments
from tests.core.test_speedups import CAN_BUILD

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = sorted((ROOT / "deploy").glob("*.yaml"))


def documents() -> list[dict[str, Any]]:
    return [doc for path in MANIFESTS for doc in yaml.safe_load_all(path.read_text()) if doc]


def ferry_commands(node: Any) -> Iterator[list[str]]:
    """Every container command (with its args) and exec probe that runs ``ferry``."""
    if isinstance(node, dict):
        command = node.get("command")
        if isinstance(command, list) and command and command[0] == "ferry":
            yield [*command, *node.get("args", [])]
        for value in node.values():
            yield from ferry_commands(value)
    elif isinstance(node, list):
        for value in node:
            yield from ferry_commands(value)


def parses(command: list[str]) -> None:
    try:
        arguments.parse(command[1:])
    except SystemExit as exit_:
        raise AssertionError(f"does not parse: {shlex.join(command)}") from exit_


def test_the_manifests_are_what_the_readme_says() -> None:
    kinds = sorted(doc["kind"] for doc in documents())
    assert kinds == [
        "CronJob",
        "CronJob",
        "Deployment",
        "Job",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    ]
    (job,) = [doc for doc in documents() if doc["kind"] == "Job"]
    assert job["spec"]["completionMode"] == "Indexed"
    (deployment,) = [doc for doc in documents() if doc["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert {"readinessProbe", "livenessProbe", "resources"} <= set(container)
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


def test_every_ferry_command_in_the_manifests_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")  # as Kubernetes sets it in an Indexed Job
    commands = list(ferry_commands(documents()))
    assert len(commands) == 6  # serve, two probes, materialize-incremental, shards, on Ray
    for command in commands:
        parses(command)


def dockerfile_exec_forms() -> dict[str, list[str]]:
    """The JSON (exec) forms of the Dockerfile's ENTRYPOINT, CMD and HEALTHCHECK CMD."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    forms = {}
    for name in ("ENTRYPOINT", "CMD"):
        match = re.search(rf"^{name} (\[.*\])$", text, re.MULTILINE)
        assert match, name
        forms[name] = json.loads(match.group(1))
    health = re.search(r"^HEALTHCHECK .*? CMD (\[.*\])$", text, re.MULTILINE)
    assert health, "HEALTHCHECK"
    forms["HEALTHCHECK"] = json.loads(health.group(1))
    return forms


def test_the_image_commands_parse() -> None:
    forms = dockerfile_exec_forms()
    parses([*forms["ENTRYPOINT"], *forms["CMD"]])
    parses(forms["HEALTHCHECK"])


def test_the_entry_point_runs_from_the_wheel_in_a_fresh_venv(tmp_path: Path) -> None:
    uv = [sys.executable, "-m", "uv"]
    subprocess.run(
        [*uv, "build", "--wheel", "--out-dir", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    venv = tmp_path / "venv"
    subprocess.run([*uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    subprocess.run(
        [*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    # The wheel carries the compiled per-row loops wherever they could be built here.
    compiled = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "from ferry.core import speedups as s; print(s.COMPILED)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert ("_speedups" in compiled.stdout) == CAN_BUILD, compiled.stdout
    ferry = venv / "bin" / "ferry"
    forms = dockerfile_exec_forms()
    entry = subprocess.run(
        [str(ferry), *forms["ENTRYPOINT"][1:], "--help"], capture_output=True, text=True
    )
    assert entry.returncode == 0, entry.stderr
    assert entry.stdout.startswith("usage: ferry serve")
    validate = subprocess.run(
        [str(ferry), "validate", str(ROOT / "samples" / "fraud" / "feature_repo.yaml")],
        capture_output=True,
        text=True,
    )
    assert "samples/fraud" in validate.stdout + validate.stderr  # it read the repo file
    # The image's health check, against nothing: a clear failure, exit 1.
    probe = subprocess.run(
        [str(ferry), *forms["HEALTHCHECK"][1:3], "127.0.0.1:1", "--timeout-s", "0.5"],
        capture_output=True,
        text=True,
    )
    assert probe.returncode == 1
    assert "UNAVAILABLE" in probe.stderr


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_no_manifest_holds_a_plain_token(path: Path) -> None:
    text = path.read_text()
    assert "token:" not in text.replace("token_sha256:", "")
