"""The sweep plot says what it shows: the call, batch size, store, server processes and the
closed loop whose maximum the offered loads are fractions of."""

from __future__ import annotations

import sys
from pathlib import Path

# The kit's scripts import each other as top-level modules, as when run from loadtest/.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "loadtest"))
import loadgen


def test_the_plot_title_names_store_batch_and_concurrency(tmp_path: Path) -> None:
    settings = loadgen.Settings(concurrency=8, processes=2, channels=3)
    title = loadgen.plot_title("GetOnlineFeatures fraud_v1", 100, "dynamodb", settings, 4)
    assert "GetOnlineFeatures fraud_v1, batch 100, store dynamodb, ferry workers 4" in title
    assert "8 in flight, 2 client process(es), 3 channel(s) each" in title
    point = {"offered_rps": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "p999_ms": 3.0}
    loadgen.plot({"ferry": {"open": [point]}}, title, tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").read_bytes().startswith(b"\x89PNG")
