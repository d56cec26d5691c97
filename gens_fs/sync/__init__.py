"""Mirror gens stores between storages: ``sync(src, dst, ...) -> SyncReport``.

listing (one recursive listing per side) -> plan (pure diff + lineage ordering) -> execute
(concurrent transfers with barriers between phases). See :func:`gens_fs.sync.api.sync`.
"""

from gens_fs.backends.retry import RetryPolicy
from gens_fs.sync.api import OverlappingRoots, sync
from gens_fs.sync.execute import DEFAULT_JOBS, SyncProgress
from gens_fs.sync.plan import SyncPlan, SyncScope, TooManyDeletes
from gens_fs.sync.report import PlannedAction, SyncError, SyncReport

__all__ = [
    "DEFAULT_JOBS",
    "OverlappingRoots",
    "PlannedAction",
    "RetryPolicy",
    "SyncError",
    "SyncPlan",
    "SyncProgress",
    "SyncReport",
    "SyncScope",
    "TooManyDeletes",
    "sync",
]
