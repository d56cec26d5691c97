"""Mirror gens stores between storages: ``sync(src, dst, ...) -> SyncReport``, which is
``plan_sync`` (listings, a pure diff and lineage ordering: nothing written) then ``apply``
(concurrent transfers with barriers between phases). See :mod:`gens_fs.sync.api`.
"""

from gens_fs.backends.retry import RetryPolicy
from gens_fs.sync.api import PlannedSync, apply, plan_sync, sync
from gens_fs.sync.execute import DEFAULT_JOBS, SyncProgress
from gens_fs.sync.plan import SyncPlan, TooManyDeletes
from gens_fs.sync.report import PlannedAction, SyncError, SyncReport
from gens_fs.sync.roots import OverlappingRoots
from gens_fs.sync.scope import SyncScope

__all__ = [
    "DEFAULT_JOBS",
    "OverlappingRoots",
    "PlannedAction",
    "PlannedSync",
    "RetryPolicy",
    "SyncError",
    "SyncPlan",
    "SyncProgress",
    "SyncReport",
    "SyncScope",
    "TooManyDeletes",
    "apply",
    "plan_sync",
    "sync",
]
