"""``python -m gens_fs`` runs the ``gens-fs`` command."""

from gens_fs.cli import entry_point

entry_point()
