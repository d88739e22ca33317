"""Errors a user can cause and fix; the CLI prints them as one line and exits non-zero."""
from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

#: a full disk, a quota, or the process's file-size limit (RLIMIT_FSIZE; Python ignores SIGXFSZ)
DISK_FULL = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class UserError(Exception):
    """Bad input (unknown name, unreadable file, missing data...). Message says what and how to fix."""

    exit_code = 2


class DiskFullError(UserError):
    """A write ran out of space (disk full, quota, file-size limit); nothing was left half-written."""


def _free_bytes(path: Path) -> int | None:
    for d in (path if path.is_dir() else path.parent, *path.parents):
        try:
            return shutil.disk_usage(d).free
        except OSError:
            continue
    return None


def disk_full(e: OSError, path: str | os.PathLike, needed: int | None = None, *, at_least: bool = False,
              fix: str = "free space or write to another folder") -> DiskFullError:
    """The one-line error for ``e`` (errno in DISK_FULL) while writing ``path``: ``needed`` bytes
    (``at_least``: a lower bound, e.g. the tensor bytes of a file whose header adds a little)."""
    path = Path(path)
    free = _free_bytes(path)
    need = f"needs {'at least ' if at_least else ''}{needed:,} bytes" if needed is not None else "needs more space"
    where = f", {free:,} bytes free there" if free is not None else ""
    why = "over the file-size limit of this process, ulimit -f" if e.errno == errno.EFBIG else os.strerror(e.errno or 0)
    return DiskFullError(f"cannot write {path}: {need}{where} ({why}); nothing was written - {fix}")


def disk_full_errno(e: BaseException) -> int | None:
    """The errno when ``e`` is (or a library's wrapper quotes) a DISK_FULL OSError, else None."""
    if isinstance(e, OSError):
        return e.errno if e.errno in DISK_FULL else None
    m = re.search(r"\(os error (\d+)\)|\[Errno (\d+)\]", str(e))
    code = int(m.group(1) or m.group(2)) if m else None
    return code if code in DISK_FULL else None
