"""Image folders, on disk or inside a .tar/.tar.gz/.tar.xz archive.

Layouts (after dropping leading folders common to every image, e.g. ``cifar10/``):

* ``<split>/<class>/<image>`` - splits named train/test (val, validation... count as test);
* ``<class>/<image>`` - one image set, split ``"all"``;
* ``<wnid>_<anything>.<ext>`` - flat ImageNet samples, split ``"all"``;
* ``<image>`` (no class folders, no wnid names) - unlabeled photos, split ``"unlabeled"`` with
  label -1 and no classes: they fine-tune by distillation and calibrate, never evaluate.

Labels are the index of the class folder (or wnid) in sorted order, over all splits together.

Directories are read lazily, one file per sample. Archives are read once, in one sequential pass
(xz allows no random access), and cached under :func:`~edgecv.data.sources.cache_root`: when
every image has the same size (CIFAR) the decoded pixels (N, H, W, 3) uint8; otherwise the
encoded bytes, decoded per sample.
"""
from __future__ import annotations

import contextlib
import io
import logging
import lzma
import os
import re
import stat
import tarfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from edgecv.data.cache import build_lock, load_entry, save_entry
from edgecv.data.sources import SINGLE_SPLIT, SPLIT_NAMES, UNLABELED_SPLIT, cache_root, file_key
from edgecv.errors import UserError

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
CACHE_VERSION = 1
MAX_ARCHIVE_BYTES = 8 << 30  # images read into memory from one archive
MAX_DECODED_BYTES = 2 << 30  # larger uniform datasets stay encoded
MAX_MEMBER_BYTES = 256 << 20  # one image file; a larger archive member is refused (a bomb, not a photo)
_WNID = re.compile(r"^(n\d{8})(?:[_.\-]|$)")
_ALL_SPLIT_NAMES = {n for names in SPLIT_NAMES.values() for n in names}


@dataclass
class SplitData:
    """One split: labels and names, plus exactly one of pixels, encoded bytes or files."""

    labels: np.ndarray  # (N,) int64
    names: list[str]  # path of each image inside the dataset
    images: np.ndarray | None = None  # (N, H, W, 3) uint8
    blob: np.ndarray | None = None  # concatenated encoded images, uint8
    starts: np.ndarray | None = None  # (N,) int64 offsets into blob
    ends: np.ndarray | None = None
    files: list[Path] | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, idx: np.ndarray) -> SplitData:
        pick = lambda seq: None if seq is None else [seq[i] for i in idx]  # noqa: E731
        return replace(self, labels=self.labels[idx], names=pick(self.names),
                       images=None if self.images is None else self.images[idx],
                       starts=None if self.starts is None else self.starts[idx],
                       ends=None if self.ends is None else self.ends[idx], files=pick(self.files))


@dataclass
class FolderData:
    classes: list[str]
    splits: dict[str, SplitData]
    layout: str  # "split-folders" | "class-folders" | "wnid-files"
    stored_hw: tuple[int, int] | None = None  # when every image has this (H, W)
    probe_hw: tuple[int, int] | None = None  # size of the first image
    wnid_names: dict[str, str] = field(default_factory=dict)


def _is_image(path: str) -> bool:
    parts = path.split("/")
    hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
    return not hidden and path.lower().endswith(IMAGE_EXTS)


def _train_first(split: str) -> tuple[bool, str]:
    return split not in SPLIT_NAMES["train"], split


def plan_layout(paths: list[str], where: str
                ) -> tuple[str, list[str], dict[str, list[tuple[str, str, int]]]]:
    """(layout, classes, split -> [(path, name, label)]) for image ``paths`` (posix, relative)."""
    parts = [p.strip("/").split("/") for p in paths]
    if not parts:
        raise UserError(f"no images found in {where}: expected <split>/<class>/<image>, "
                        f"<class>/<image> or <wnid>_<name>.JPEG files ({', '.join(IMAGE_EXTS)})")
    skip = 0  # drop leading folders shared by all images, but never a split folder
    while all(len(p) > skip + 1 for p in parts) and len({p[skip] for p in parts}) == 1 \
            and parts[0][skip].lower() not in _ALL_SPLIT_NAMES:
        skip += 1
    rel = [p[skip:] for p in parts]
    if all(len(r) == 4 and r[2] == "images" for r in rel):  # Tiny ImageNet: <split>/<wnid>/images/<image>
        rel = [[r[0], r[1], r[3]] for r in rel]
    depths = {len(r) for r in rel}
    if len(depths) > 1:
        a = next(p for p, r in zip(paths, rel) if len(r) == min(depths))
        b = next(p for p, r in zip(paths, rel) if len(r) == max(depths))
        raise UserError(f"mixed folder depths in {where} (e.g. {a} and {b}); expected "
                        "<split>/<class>/<image> or <class>/<image> throughout")
    depth = depths.pop()
    if depth == 3:
        bad = sorted({r[0] for r in rel if r[0].lower() not in _ALL_SPLIT_NAMES})
        if bad:
            raise UserError(f"{where}: top folders {bad[:5]} are not split names; expected "
                            "<split>/<class>/<image> with split train/test/val, or <class>/<image>")
        layout, keys = "split-folders", [(r[0].lower(), r[1]) for r in rel]
    elif depth == 2:
        layout, keys = "class-folders", [(SINGLE_SPLIT, r[0]) for r in rel]
    else:
        wnids = [_WNID.match(r[0]) for r in rel]
        if not any(wnids):  # a flat folder of photos: unlabeled (distillation and calibration only)
            splits = {UNLABELED_SPLIT: sorted(((p, r[0], -1) for p, r in zip(paths, rel)), key=lambda e: e[1])}
            return "unlabeled", [], splits
        if not all(wnids):
            example = next(r[0] for r, m in zip(rel, wnids) if not m)
            raise UserError(f"{where}: some images are named <wnid>_<name> and some (e.g. {example}) not; "
                            "name them all <wnid>_<name>.JPEG (labeled), or none (unlabeled photos)")
        layout, keys = "wnid-files", [(SINGLE_SPLIT, m.group(1)) for m in wnids if m]
    classes = sorted({cls for _, cls in keys})
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, list[tuple[str, str, int]]] = {}
    for path, r, (split, cls) in zip(paths, rel, keys):
        splits.setdefault(split, []).append((path, "/".join(r), index[cls]))
    for entries in splits.values():
        entries.sort(key=lambda e: (e[2], e[1]))
    return layout, classes, {s: splits[s] for s in sorted(splits, key=_train_first)}


def _wnid_names(layout: str, names: list[str]) -> dict[str, str]:
    if layout != "wnid-files":
        return {}
    out = {}
    for n in names:
        stem = n.rsplit(".", 1)[0]
        out.setdefault(stem[:9], stem[10:].replace("_", " ") or stem[:9])
    return out


def scan_dir(root: Path) -> FolderData:
    """Index an image-folder directory (files are decoded lazily by the dataset)."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        base = Path(dirpath).relative_to(root).as_posix()
        paths += [f if base == "." else f"{base}/{f}" for f in filenames]
    paths = _regular_inside(root, sorted(p for p in paths if _is_image(p)))
    layout, classes, splits = plan_layout(paths, str(root))
    data = {s: SplitData(np.array([e[2] for e in es], dtype=np.int64), [e[1] for e in es],
                         files=[root / e[0] for e in es]) for s, es in splits.items()}
    first = next(iter(data.values())).files[0]  # type: ignore[index]
    try:
        with Image.open(first) as im:
            probe = (im.height, im.width)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as e:
        raise UserError(f"cannot read image {first}: {e}") from e
    names = [n for s in data.values() for n in s.names]
    return FolderData(classes, data, layout, probe_hw=probe, wnid_names=_wnid_names(layout, names))


def _regular_inside(root: Path, paths: list[str]) -> list[str]:
    """Only regular files inside ``root``: a FIFO or device named .jpg would hang or read a device,
    a symlink may point anywhere on the machine. What is left out is logged, not read."""
    keep, skipped, base = [], [], root.resolve()
    for p in paths:
        full = root / p
        try:
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                target = full.resolve()
                ok = target.is_relative_to(base) and target.is_file()
            else:
                ok = stat.S_ISREG(st.st_mode)
        except (OSError, RuntimeError):  # dangling or looping link
            ok = False
        (keep if ok else skipped).append(p)
    if skipped:
        log.warning("%s: skipped %d entries that are not regular image files inside the folder "
                    "(symlinks out of it, devices, FIFOs), e.g. %s", root, len(skipped), skipped[0])
    return keep


def _unsafe_name(name: str) -> bool:
    parts = name.replace("\\", "/").split("/")
    return name.startswith("/") or ".." in parts or "\0" in name


def _memory_budget() -> int:
    """Bytes of images one archive may hold in memory: MAX_ARCHIVE_BYTES, at most half the RAM and
    half of what an address-space limit (ulimit -v) leaves, so a decompression bomb of many
    plausible-sized members is refused in one line instead of ending in MemoryError or swap."""
    import resource

    budget = MAX_ARCHIVE_BYTES
    with contextlib.suppress(OSError, ValueError):
        budget = min(budget, os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2)
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
        used = 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        budget = min(budget, max(soft - used, 0) // 2)
    return budget


def _read_members(path: Path) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    total, links, budget = 0, 0, _memory_budget()
    try:
        with tarfile.open(path, mode="r|*") as tf:  # streaming: one sequential pass; nothing is extracted
            for m in tf:
                if _unsafe_name(m.name) and (m.isfile() or m.issym() or m.islnk()):
                    raise UserError(f"archive {path} holds an unsafe member name {m.name[:200]!r} "
                                    "(absolute or with '..'); refusing it - rebuild the archive with relative paths")
                if not m.isfile():
                    links += m.issym() or m.islnk()  # links, devices, FIFOs: never followed or read
                    continue
                if not _is_image(m.name):
                    continue
                if m.size > MAX_MEMBER_BYTES:
                    raise UserError(f"archive {path}: member {m.name[:200]!r} declares {m.size:,} bytes, over "
                                    f"the {MAX_MEMBER_BYTES >> 20} MiB an image may have; refusing it")
                total += m.size
                if total > budget:
                    raise UserError(f"archive {path} holds over {budget:,} bytes of images, more than edgecv "
                                    "reads into memory here; extract it and pass the directory instead")
                f = tf.extractfile(m)
                if f is not None:
                    members[m.name] = f.read()
    except (tarfile.TarError, OSError, EOFError, lzma.LZMAError, zlib.error) as e:
        raise UserError(f"cannot read archive {path}: {e}; check the file or re-download it") \
            from e
    except MemoryError:
        members.clear()
        raise UserError(f"archive {path} does not fit in memory ({total:,} bytes of images declared); "
                        "extract it and pass the directory instead") from None
    if links:
        log.warning("archive %s: ignored %d symbolic/hard link member(s) (never followed)", path, links)
    return members


_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "GIF",
            ".webp": "WEBP", ".ppm": "PPM", ".pgm": "PPM", ".tif": "TIFF", ".tiff": "TIFF"}


def _decode(data: bytes, name: str) -> Image.Image:
    # the extension's format first: saves PIL probing every plugin (~15% of a CIFAR decode)
    hint = _FORMATS.get(os.path.splitext(name)[1].lower())
    for formats in ([hint], None) if hint else (None,):
        try:
            with Image.open(io.BytesIO(data), formats=formats) as im:
                return im.convert("RGB")
        except UnidentifiedImageError:
            if formats is None:
                raise UserError(f"cannot decode image {name}: not an image file") from None
        except (OSError, Image.DecompressionBombError) as e:
            raise UserError(f"cannot decode image {name}: {e}") from e
    raise AssertionError("unreachable")


def _decode_uniform(splits: dict[str, list[tuple[str, str, int]]], members: dict[str, bytes],
                    where: Path, progress: Progress | None) -> dict[str, np.ndarray] | None:
    """Decode every image into per-split (N, H, W, 3) arrays; None once sizes turn out to differ."""
    total, done, hw = sum(len(v) for v in splits.values()), 0, None
    out: dict[str, np.ndarray] = {}
    for split, entries in splits.items():
        arr = None
        for i, (path, _, _) in enumerate(entries):
            img = _decode(members[path], f"{where}:{path}")
            if hw is None:
                hw = (img.height, img.width)
                if total * hw[0] * hw[1] * 3 > MAX_DECODED_BYTES:
                    return None
            if (img.height, img.width) != hw:
                return None
            if arr is None:
                arr = np.empty((len(entries), *hw, 3), dtype=np.uint8)
            arr[i] = np.asarray(img)
            done += 1
            if progress is not None and (done % 500 == 0 or done == total):
                progress(done, total)
        out[split] = arr if arr is not None else np.empty((0, 0, 0, 3), np.uint8)
    return out


def read_archive(path: Path, progress: Progress | None = None) -> FolderData:
    """Read an image-folder archive, from the cache when it was read before."""
    stem = path.name.split(".")[0] or "archive"
    folder = cache_root() / "datasets" / f"{stem}-{file_key(path, CACHE_VERSION)}"
    with contextlib.ExitStack() as stack:  # two processes building one entry: the second waits, then reads it
        try:
            stack.enter_context(build_lock(folder))
        except OSError as e:  # read-only cache root: build without the lock (save_entry warns)
            log.debug("no cache lock for %s (%s)", folder, e)
        return _read_archive(path, folder, progress)


def _read_archive(path: Path, folder: Path, progress: Progress | None) -> FolderData:
    hit = load_entry(folder, CACHE_VERSION)
    if hit is not None:
        log.info("loaded %s from cache %s", path.name, folder)
        return _from_cache(*hit)
    t0 = time.perf_counter()
    members = _read_members(path)
    layout, classes, splits = plan_layout(sorted(members), str(path))
    log.info("read %d images from %s in %.1f s; decoding (cached afterwards in %s)",
             len(members), path, time.perf_counter() - t0, folder)
    decoded = _decode_uniform(splits, members, path, progress)
    arrays: dict[str, np.ndarray] = {}
    result: dict[str, SplitData] = {}
    for split, entries in splits.items():
        labels = np.array([e[2] for e in entries], dtype=np.int64)
        names = [e[1] for e in entries]
        arrays[f"{split}.labels"], arrays[f"{split}.names"] = labels, np.array(names)
        if decoded is not None:
            arrays[f"{split}.images"] = decoded[split]
            result[split] = SplitData(labels, names, images=decoded[split])
        else:
            blobs = [members[e[0]] for e in entries]
            ends = np.cumsum([len(b) for b in blobs], dtype=np.int64)
            starts = ends - np.array([len(b) for b in blobs], dtype=np.int64)
            blob = np.frombuffer(b"".join(blobs), dtype=np.uint8)
            arrays.update({f"{split}.blob": blob, f"{split}.starts": starts, f"{split}.ends": ends})
            result[split] = SplitData(labels, names, blob=blob, starts=starts, ends=ends)
    all_names = [n for s in result.values() for n in s.names]
    meta = {"version": CACHE_VERSION, "source": str(path), "layout": layout, "classes": classes,
            "splits": list(splits), "wnid_names": _wnid_names(layout, all_names)}
    first = next(iter(splits.values()))[0]
    probe = _decode(members[first[0]], first[0]).size[::-1]
    meta["probe_hw"] = list(probe)
    if decoded is not None:
        meta["stored_hw"] = list(probe)
    save_entry(folder, arrays, meta)
    log.info("decoded %s in %.1f s", path.name, time.perf_counter() - t0)
    return _from_meta(result, meta)


def _from_cache(arrays: dict[str, np.ndarray], meta: dict) -> FolderData:
    result = {}
    for split in meta["splits"]:
        get = lambda k: arrays.get(f"{split}.{k}")  # noqa: E731
        result[split] = SplitData(get("labels").astype(np.int64), get("names").tolist(),
                                  images=get("images"), blob=get("blob"), starts=get("starts"),
                                  ends=get("ends"))
    return _from_meta(result, meta)


def _from_meta(result: dict[str, SplitData], meta: dict) -> FolderData:
    hw = meta.get("stored_hw")
    result = {s: result[s] for s in sorted(result, key=_train_first)}
    return FolderData(meta["classes"], result, meta["layout"],
                      stored_hw=tuple(hw) if hw else None, probe_hw=tuple(meta["probe_hw"]),
                      wnid_names=meta.get("wnid_names", {}))
