"""The wheel's build hook: the compiled per-row loops (``ferry.core._speedups``) go into the
wheel where the building machine can compile them (scripts/build_speedups.py), making it a
wheel for that platform; elsewhere the wheel stays pure Python and Ferry runs the loops'
Python twins. Editable installs build in place instead (scripts/setup.sh)."""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_SCRIPT = Path(__file__).resolve().parent / "scripts" / "build_speedups.py"


class SpeedupsBuildHook(BuildHookInterface):
    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return
        spec = importlib.util.spec_from_file_location("build_speedups", _SCRIPT)
        assert spec is not None
        assert spec.loader is not None
        builder = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(builder)
        self._directory = tempfile.TemporaryDirectory(prefix="ferry-speedups-")
        target = Path(self._directory.name) / builder.MODULE
        if builder.build(target):
            build_data["force_include"][str(target)] = f"ferry/core/{builder.MODULE}"
            build_data["pure_python"] = False
            build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        directory = getattr(self, "_directory", None)
        if directory is not None:
            directory.cleanup()
