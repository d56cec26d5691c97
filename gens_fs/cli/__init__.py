"""The ``gens-fs`` command. Each sub-module registers its commands on ``app``.

Exit codes: 0 success; 1 the work ran but found problems (check errors, failed files);
2 a usage or configuration mistake (one line on stderr, no traceback); 130 interrupted
(Ctrl-C, one line on stderr).
"""

from __future__ import annotations

from gens_fs.cli import demo, export, gc, inspect, sync  # noqa: F401  (registers the commands)
from gens_fs.cli._common import app, entry_point, main

__all__ = ["app", "entry_point", "main"]
