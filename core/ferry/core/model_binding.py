"""How a model version names the feature service it was trained with.

The contract between the client (which binds a version when it registers a model) and the
server (which serves that service's features for the version): one MLflow model-version
tag, written here once.
"""

from __future__ import annotations

FEATURE_SERVICE_TAG = "ferry.feature_service"
"""Model-version tag naming the feature service the version was trained with."""
