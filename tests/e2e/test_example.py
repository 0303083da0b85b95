"""The end-to-end workflow example runs as documented."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_fraud_workflow_example(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "fraud_workflow.py"), str(tmp_path / "work")],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "training frame: 20000 rows x 14 columns" in out
    assert "alias champion, stage Production" in out
    assert "serving version 1 (fraud_v1):" in out
    assert out.count("fraud score") == 5
    assert "watcher: champion moved to version 2" in out
    # It says what it is doing before each slow step, and is never silent for long.
    steps = [line for line in out.splitlines() if line.startswith("[")]
    assert sum("logging the model to MLflow" in line for line in steps) == 2
    times = [float(line[1:].split(" s]")[0]) for line in steps]
    assert times == sorted(times)
    assert max(b - a for a, b in itertools.pairwise(times)) < 60, steps
    # Everything it writes stays in its work folder (MLflow artifacts included).
    assert [p.name for p in tmp_path.iterdir()] == ["work"]
