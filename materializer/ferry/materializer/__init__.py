"""The materialization job: loads the online store from the offline store, as of a time."""

from ferry.materializer.job import (
    REPORT_COUNTS,
    JobConfig,
    ViewReport,
    materialize,
    open_sources,
    total_rows,
)
from ferry.materializer.plan import ViewPlan, plan_incremental, plan_window, select_views
from ferry.materializer.progress import (
    Counts,
    Progress,
    SilentProgress,
    TerminalProgress,
    progress_for,
)
from ferry.materializer.shards import Shard

__all__ = [
    "REPORT_COUNTS",
    "Counts",
    "JobConfig",
    "Progress",
    "Shard",
    "SilentProgress",
    "TerminalProgress",
    "ViewPlan",
    "ViewReport",
    "materialize",
    "open_sources",
    "plan_incremental",
    "plan_window",
    "progress_for",
    "select_views",
    "total_rows",
]
