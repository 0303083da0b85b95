"""The load-test kit: scripts run as ``python loadtest/NAME.py`` (they import each other as
top-level modules). A package only so that import-linter can hold it to Ferry's public
faces (pyproject.toml)."""
