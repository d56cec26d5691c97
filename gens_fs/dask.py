"""Dask for stores one machine handles too slowly (``pip install 'gens_fs[dask]'``).

:func:`sync`: :func:`gens_fs.sync` with its listing and copies run as tasks on a
``distributed`` cluster (see :mod:`gens_fs.dask_sync`).
"""

from gens_fs.dask_sync import ClusterUnavailable, sync

__all__ = ["ClusterUnavailable", "sync"]
