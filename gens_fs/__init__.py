"""gens_fs: a gen-id-first store for LLM generation artifacts over any fsspec filesystem.

Layout: ``<data_root>/gens/<stage>/<gen_id>/{raw.txt,parsed.txt,prompt.txt,metadata.json}``.
"""

from gens_fs.backends.limits import RateLimit
from gens_fs.backends.retry import RetryPolicy
from gens_fs.check import CheckReport, Finding, check
from gens_fs.cohorts import MembershipRow
from gens_fs.data_root import DataRoot, cohort_ids, read_membership, write_membership
from gens_fs.errors import (
    AccessDenied,
    CohortNotFound,
    GenerationExists,
    GenerationNotFound,
    GensError,
    InvalidGenId,
    InvalidMembership,
    InvalidMetadata,
    InvalidSelection,
    MissingExtra,
    ParentNotFound,
    StorageError,
    UndecodableText,
    UnknownArtifact,
    UnknownStage,
)
from gens_fs.gc import GcReport, gc
from gens_fs.inventory import GenerationEntry, StoreStats, list_generations, stats
from gens_fs.layout import PARENT_STAGE, STAGES, new_gen_id
from gens_fs.models import Generation, GenerationMetadata
from gens_fs.selection import Selection
from gens_fs.store import GensStore, load_generation
from gens_fs.sync import SyncReport, TooManyDeletes, sync
from gens_fs.tables import to_arrow, to_pandas

__all__ = [
    "PARENT_STAGE",
    "STAGES",
    "AccessDenied",
    "CheckReport",
    "CohortNotFound",
    "DataRoot",
    "Finding",
    "GcReport",
    "Generation",
    "GenerationEntry",
    "GenerationExists",
    "GenerationMetadata",
    "GenerationNotFound",
    "GensError",
    "GensStore",
    "InvalidGenId",
    "InvalidMembership",
    "InvalidMetadata",
    "InvalidSelection",
    "MembershipRow",
    "MissingExtra",
    "ParentNotFound",
    "RateLimit",
    "RetryPolicy",
    "Selection",
    "StorageError",
    "StoreStats",
    "SyncReport",
    "TooManyDeletes",
    "UndecodableText",
    "UnknownArtifact",
    "UnknownStage",
    "check",
    "cohort_ids",
    "gc",
    "list_generations",
    "load_generation",
    "new_gen_id",
    "read_membership",
    "stats",
    "sync",
    "to_arrow",
    "to_pandas",
    "write_membership",
]
__version__ = "0.1.0"
