"""``gens-fs sync``: mirror a data root to another storage."""
