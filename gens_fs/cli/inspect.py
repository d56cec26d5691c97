"""``gens-fs ls | show | check | stats``: see a store from the shell."""
