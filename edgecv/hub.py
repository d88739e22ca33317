"""Weight files from the network, verified before use, cached, never half-written.

``fetch(url, dest, sha256=..., hash_prefix=...)`` streams ``url`` into a temporary file beside
``dest`` while hashing it, checks the length the server declared and the hash, and only then
renames it to ``dest``: an interrupted, truncated or corrupt transfer never becomes a cached
file. A lock file beside ``dest`` makes a second process wait for the first download instead
of racing it. Written on urllib (no extra dependency) because ``torch.hub`` checks only a hash
prefix, cannot use a mirror folder, and writes into its own cache layout.

Where files are looked for (``locate``): the cache (``$EDGECV_CACHE/weights``, default
``~/.cache/edgecv/weights``), then ``$EDGECV_WEIGHTS_MIRROR`` (a folder, or a base URL whose
``/<file name>`` is fetched), then the source's own URL.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import os
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from edgecv.errors import UserError

log = logging.getLogger(__name__)

MIRROR_ENV = "EDGECV_WEIGHTS_MIRROR"
CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


class DownloadError(UserError):
    """A weights file could not be fetched or did not verify."""


def weights_cache() -> Path:
    from edgecv.data.sources import cache_root

    return cache_root() / "weights"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def check_hash(digest: str, *, sha256: str | None, hash_prefix: str | None) -> str | None:
    """None when ``digest`` (hex sha256) matches; else what was expected."""
    if sha256 and digest != sha256.lower():
        return sha256.lower()
    if hash_prefix and not digest.startswith(hash_prefix.lower()):
        return f"{hash_prefix.lower()}..."
    return None


def verify_file(path: Path, *, sha256: str | None, hash_prefix: str | None) -> None:
    """Raise DownloadError when ``path``'s sha256 is not the expected one."""
    if not (sha256 or hash_prefix):
        return
    digest = sha256_file(path)
    want = check_hash(digest, sha256=sha256, hash_prefix=hash_prefix)
    if want:
        raise DownloadError(f"{path} has sha256 {digest[:16]}..., expected {want[:16]}...: "
                            "the file is corrupt or not the one the table names; delete it and try again")


@contextlib.contextmanager
def _lock(dest: Path) -> Iterator[None]:
    """An exclusive lock on ``dest``'s lock file (two processes fetching one file take turns)."""
    import fcntl

    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest.parent / f".{dest.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _clean_partials(dest: Path) -> None:
    """Remove temporary files of earlier fetches of ``dest`` that were killed (we hold the lock)."""
    for p in dest.parent.glob(f".{dest.name}.*.part"):
        with contextlib.suppress(OSError):
            p.unlink()


def fetch(url: str, dest: str | os.PathLike, *, sha256: str | None = None, hash_prefix: str | None = None,
          timeout: float = 60.0, progress: Progress | None = None) -> Path:
    """Download ``url`` to ``dest`` (verified, atomic). An existing ``dest`` that verifies is kept."""
    dest = Path(dest)
    with _lock(dest):
        if dest.is_file():  # another process fetched it while we waited for the lock
            try:
                verify_file(dest, sha256=sha256, hash_prefix=hash_prefix)
                return dest
            except DownloadError:
                log.warning("cached %s does not verify; fetching it again", dest)
        _clean_partials(dest)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size = _stream(url, out, timeout, progress)
            want = check_hash(digest, sha256=sha256, hash_prefix=hash_prefix)
            if want:
                raise DownloadError(f"download of {url} has sha256 {digest[:16]}..., expected {want[:16]}...; "
                                    "nothing was cached (a wrong mirror, or a changed file upstream)")
            os.chmod(tmp, 0o644)
            os.replace(tmp, dest)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                need = getattr(e, "edgecv_needed", None)  # the Content-Length, when the server sent one
                need = f"needs {need:,} bytes, " if need else ""
                raise DownloadError(f"no space left to write {dest} ({need}{os.strerror(e.errno)}); "
                                    f"free space there or set EDGECV_CACHE to another folder") from None
            raise
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    log.info("fetched %s -> %s (%d bytes)", url, dest, size)
    return dest


def _stream(url: str, out, timeout: float, progress: Progress | None) -> tuple[str, int]:
    """Copy the body of ``url`` into ``out``; (sha256 hex, bytes). A short body is an error."""
    h, size, total = hashlib.sha256(), 0, None
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "edgecv"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http/https/file URLs)
            declared = resp.headers.get("Content-Length")
            total = int(declared) if declared and declared.isdigit() else None
            while True:
                block = resp.read(CHUNK)
                if not block:
                    break
                out.write(block)
                h.update(block)
                size += len(block)
                if progress is not None:
                    progress(size, total)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"cannot download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise DownloadError(f"cannot download {url}: {reason}") from None
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            e.edgecv_needed = total  # fetch names the size in its one-line error
            raise
        raise DownloadError(f"cannot download {url}: transfer broken after {size} bytes ({e})") from None
    if total is not None and size != total:
        raise DownloadError(f"cannot download {url}: transfer cut after {size} of {total} bytes; "
                            "nothing was cached, try again")
    return h.hexdigest(), size


def locate(file_name: str, *, url: str | None, sha256: str | None = None, hash_prefix: str | None = None,
           local: tuple[Path, ...] = (), progress: Progress | None = None) -> Path:
    """A verified local copy of ``file_name``: cache, ``local`` candidates, mirror, then ``url``.

    Offline, the error names the URL and the exact path where the file can be put by hand.
    """
    cached = weights_cache() / file_name
    if cached.is_file():
        verify_file(cached, sha256=sha256, hash_prefix=hash_prefix)
        return cached
    for path in local:
        if path.is_file():
            verify_file(path, sha256=sha256, hash_prefix=hash_prefix)
            return path
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    tried: list[str] = []
    if mirror:
        if "://" not in mirror:  # a folder
            path = Path(mirror).expanduser() / file_name
            if path.is_file():
                verify_file(path, sha256=sha256, hash_prefix=hash_prefix)
                return path
            tried.append(f"mirror folder {path} (no such file)")
        else:
            try:
                return fetch(f"{mirror.rstrip('/')}/{file_name}", cached, sha256=sha256, hash_prefix=hash_prefix,
                             progress=progress)
            except DownloadError as e:
                if "sha256" in str(e):
                    raise
                tried.append(str(e))
    if url:
        try:
            return fetch(url, cached, sha256=sha256, hash_prefix=hash_prefix, progress=progress)
        except DownloadError as e:
            if "sha256" in str(e):
                raise
            tried.append(str(e))
    where = "; ".join(tried) or "no download URL"
    raise DownloadError(f"{where}; download {url or file_name} by hand and put it at {cached} "
                        f"(or set {MIRROR_ENV} to a folder or base URL holding {file_name})")
