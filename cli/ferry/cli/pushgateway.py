"""``ferry materialize --pushgateway URL``: a run's counters to a Prometheus Pushgateway.

A batch job is gone before anyone scrapes it, so it pushes: on success the whole group
(job ``ferry_materialize``, label ``project``) is replaced by the run's per-view counts (as
gauges: the values of the last run), its duration and ``..._last_success_timestamp_seconds``;
a failed run only adds ``..._last_failure_timestamp_seconds``, so the last success stays
visible beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, pushadd_to_gateway

from ferry.core.errors import FerryError
from ferry.materializer import REPORT_COUNTS, ViewReport

JOB = "ferry_materialize"


def push_success(url: str, project: str, reports: Sequence[ViewReport]) -> None:
    """Replace the project's group with this run's counts.

    Raises:
        FerryError: the gateway cannot be reached or refuses the push.
    """
    registry = CollectorRegistry()
    for name in REPORT_COUNTS:
        gauge = Gauge(
            f"{JOB}_{name}", f"{name} of the last run, per view", ["view"], registry=registry
        )
        for report in reports:
            gauge.labels(report.view).set(getattr(report, name))
    seconds = Gauge(
        f"{JOB}_seconds", "Duration of the last run, per view", ["view"], registry=registry
    )
    for report in reports:
        seconds.labels(report.view).set(report.seconds)
    Gauge(
        f"{JOB}_last_success_timestamp_seconds", "When a run last succeeded", registry=registry
    ).set(time.time())
    _push(push_to_gateway, url, project, registry)


def push_failure(url: str, project: str) -> None:
    """Add the failure's time to the project's group, keeping the last success's counts."""
    registry = CollectorRegistry()
    Gauge(f"{JOB}_last_failure_timestamp_seconds", "When a run last failed", registry=registry).set(
        time.time()
    )
    _push(pushadd_to_gateway, url, project, registry)


def _push(push: Callable[..., None], url: str, project: str, registry: CollectorRegistry) -> None:
    try:
        push(url, job=JOB, registry=registry, grouping_key={"project": project}, timeout=10)
    except OSError as err:
        raise FerryError(f"cannot push metrics to the Pushgateway at {url}: {err}") from err
