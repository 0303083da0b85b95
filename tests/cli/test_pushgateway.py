"""`ferry materialize --pushgateway URL` pushes the run's counts, as its JSON lines give
them, to a Pushgateway (here a small HTTP receiver on loopback); a failed run adds only
its failure time."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.fraud import SAMPLE_REPO, generate

Received = list[tuple[str, str, str]]  # method, path, body


@pytest.fixture
def gateway() -> Iterator[tuple[str, Received]]:
    received: Received = []

    class Receiver(BaseHTTPRequestHandler):
        def _take(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
            received.append((self.command, self.path, body))
            self.send_response(200)
            self.end_headers()

        do_PUT = do_POST = _take  # noqa: N815 - http.server's method names

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", received
    server.shutdown()
    server.server_close()


def test_a_run_pushes_its_counts_and_a_failure_its_time(
    gateway: tuple[str, Received], tmp_path: Path
) -> None:
    url, received = gateway
    generate(tmp_path / "data", users=50, merchants=5, transactions=20, end=0, ttl=0)
    ferry = [sys.executable, "-m", "ferry.cli.main", "materialize", str(SAMPLE_REPO)]
    common = ["--offline-root", str(tmp_path / "data"), "--pushgateway", url]
    store = ["--online-store", f"sqlite:///{tmp_path / 'online.db'}"]
    window = ["--start", "2000-01-01", "--end", "now"]
    done = subprocess.run([*ferry, *common, *store, *window], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    views = {line["view"]: line for line in lines if line["kind"] == "view"}

    (put,) = received
    assert put[:2] == ("PUT", "/metrics/job/ferry_materialize/project/fraud")
    pushed = {
        (sample.name, sample.labels.get("view")): sample.value
        for family in text_string_to_metric_families(put[2])
        for sample in family.samples
    }
    for view, line in views.items():
        assert pushed["ferry_materialize_rows_read", view] == line["rows_read"]
        assert pushed["ferry_materialize_rows_written", view] == line["rows_written"]
    assert pushed["ferry_materialize_last_success_timestamp_seconds", None] > 0

    bad = ["--online-store", "redis://127.0.0.1:1/0"]  # nothing listens there
    failed = subprocess.run([*ferry, *common, *bad, *window], capture_output=True, text=True)
    assert failed.returncode == 1
    method, path, body = received[1]
    assert (method, path) == ("POST", "/metrics/job/ferry_materialize/project/fraud")
    assert "ferry_materialize_last_failure_timestamp_seconds" in body
    assert "rows_read" not in body
