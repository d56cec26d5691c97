"""What killed local writers leave behind, found and removed.

A local write goes through a hidden temporary file beside its target
(:func:`gens_fs.layout.temp_file_name`), renamed or linked into place when whole; the
write removes it on any error it sees. A process killed in between (SIGKILL, the OOM
killer, a machine crash) leaves it, and the folder it made for it. :func:`find_leftovers`
finds them (one walk, no symbolic link followed, no special file opened);
:func:`remove_leftovers` removes what the caller chose, a folder only while it is empty.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Sequence

from gens_fs.backends.base import Leftovers, Removed, Stat
from gens_fs.layout import is_temp_file_name


def find_leftovers(prefixes: Iterable[str]) -> Leftovers:
    """Every temporary file under the folders ``prefixes`` (regular files named as our
    writers name them), and every folder that holds only such files or nothing at all."""
    found = Leftovers()
    pending = [p for p in prefixes if os.path.isdir(p) and not os.path.islink(p)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listed:
                entries = list(listed)
            folder_stat = os.lstat(folder)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone since it was listed
        temps = []
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                pending.append(entry.path)
            elif entry.is_file(follow_symlinks=False) and is_temp_file_name(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    info = entry.stat(follow_symlinks=False)
                    temps.append(Stat(entry.path, info.st_size, info.st_mtime))
        found.temp_files.extend(temps)
        if len(temps) == len(entries):  # nothing else in it
            found.folders.append(Stat(folder, 0, folder_stat.st_mtime, len(entries)))
    return found


def remove_leftovers(files: Sequence[str], folders: Sequence[str]) -> list[Removed]:
    """Unlink ``files`` (one already gone counts as removed), then remove each of
    ``folders`` that is empty (``rmdir``: never a folder with anything in it)."""
    done = [_unlink(path) for path in files]
    for folder in sorted(folders, key=len, reverse=True):  # the innermost first
        try:
            os.rmdir(folder)
            done.append(Removed(folder))
        except FileNotFoundError:
            done.append(Removed(folder))
        except OSError as exc:
            why = "not empty any more: left as it is" if exc.errno == errno.ENOTEMPTY else exc
            done.append(Removed(folder, str(why)))
    return done


def _unlink(path: str) -> Removed:
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return Removed(path, "not a regular file any more: left as it is")
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return Removed(path, str(exc))
    return Removed(path)
