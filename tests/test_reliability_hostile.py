"""Hostile and broken dataset input given as --data: tar members with '../' and absolute names,
symlinks / hard links out of the tree, device and FIFO members, huge declared sizes, a gzip bomb, a
pixel bomb, truncated archives, non-images named .jpg; folders with the same. All cases are loaded in
ONE child process under a 2 GiB address-space limit with a per-case alarm: each must load (only its
real images) or raise one UserError line; no traceback, hang, crash or allocation past the limit, and
nothing written outside the cache folder."""
from __future__ import annotations

import gzip
import io
import json
import lzma
import os
import resource
import struct
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import REPO

AS_LIMIT = 2 << 30


def png(value: int = 0, size: int = 8) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size, size, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def tar_of(members: dict[str, bytes], extra: list[tarfile.TarInfo] = (), mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as tf:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        for ti in extra:
            tf.addfile(ti)
    return buf.getvalue()


def _good(n: int = 6) -> dict[str, bytes]:
    return {f"toy/c{i % 2}/{i}.png": png(i * 10) for i in range(n)}


def _link(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.linkname = kind, target
    return ti


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.devmajor, ti.devminor = kind, 1, 5
    return ti


def _huge_header(name: str, size: int) -> bytes:
    """A tar whose one member declares ``size`` bytes and then ends (header only)."""
    ti = tarfile.TarInfo(name)
    ti.size = size
    return ti.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024


def _gzip_bomb(name: str, size: int) -> bytes:
    """A .tar.gz whose member inflates to ``size`` zero bytes (~1000:1)."""
    raw = io.BytesIO()
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9) as gz:
        ti = tarfile.TarInfo(name)
        ti.size = size
        gz.write(ti.tobuf(format=tarfile.GNU_FORMAT))
        block = b"\0" * (1 << 20)
        for _ in range(size >> 20):
            gz.write(block)
        gz.write(b"\0" * 1024)
    return raw.getvalue()


def _gzip_bomb_many(n: int, size: int) -> bytes:
    """A 2.5 MB .tar.gz of ``n`` members of ``size`` zero bytes each (each under the per-image limit,
    together 2.4 GB: past the 2 GiB address-space limit). Built in milliseconds: after a full flush
    the deflate bytes of 1 MiB of zeros are the same every time, so they are repeated, not recompressed.
    The gzip trailer's CRC is left 0: a reader must refuse the archive long before reaching it."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out, zeros = [b"\x1f\x8b\x08\x00\0\0\0\0\x00\xff"], b""
    for i in range(n):
        ti = tarfile.TarInfo(f"toy/c{i % 2}/bomb{i}.png")
        ti.size = size
        out.append(c.compress(ti.tobuf(format=tarfile.GNU_FORMAT)) + c.flush(zlib.Z_FULL_FLUSH))
        zeros = zeros or c.compress(b"\0" * (1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
        out.append(zeros * (size >> 20))
    out.append(c.compress(b"\0" * 1024) + c.flush(zlib.Z_FINISH) + struct.pack("<II", 0, 0))
    return b"".join(out)


def _pixel_bomb(w: int = 40000, h: int = 40000) -> bytes:
    """A PNG declaring w x h pixels (1.6 G) in a few dozen bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b""))


def archives(outside: Path) -> dict[str, tuple[bytes, str, str]]:
    """name -> (archive bytes, expected 'ok:N' or 'error', what the message must contain)."""
    g = _good()
    xz = lzma.compress(tar_of(g))
    return {
        "dotdot.tar": (tar_of({**g, "../evil.png": png()}), "error", "unsafe member name"),
        "dotdot_deep.tar": (tar_of({**g, "toy/c0/../../../evil.png": png()}), "error", "unsafe member name"),
        "absolute.tar": (tar_of({**g, str(outside / "abs.png"): png()}), "error", "unsafe member name"),
        "symlink_out.tar": (tar_of(g, [_link("toy/c0/link.png", "/etc/passwd", tarfile.SYMTYPE)]), "ok:6", ""),
        "symlink_dotdot.tar": (tar_of(g, [_link("toy/c0/l2.png", "../../../../etc/shadow", tarfile.SYMTYPE)]),
                               "ok:6", ""),
        "hardlink_out.tar": (tar_of(g, [_link("toy/c1/hl.png", "/etc/passwd", tarfile.LNKTYPE)]), "ok:6", ""),
        "chardev.tar": (tar_of(g, [_special("toy/c0/zero.png", tarfile.CHRTYPE)]), "ok:6", ""),
        "blockdev.tar": (tar_of(g, [_special("toy/c1/disk.png", tarfile.BLKTYPE)]), "ok:6", ""),
        "fifo.tar": (tar_of(g, [_special("toy/c0/pipe.png", tarfile.FIFOTYPE)]), "ok:6", ""),
        "huge_declared.tar": (_huge_header("toy/c0/big.png", 1 << 40), "error", "declares"),
        "gzip_bomb.tar.gz": (_gzip_bomb("toy/c0/bomb.png", 300 << 20), "error", "declares"),
        "gzip_bomb_many.tar.gz": (_gzip_bomb_many(12, 200 << 20), "error", "more than edgecv reads into memory"),
        "pixel_bomb.tar": (tar_of({**g, "toy/c1/bomb.png": _pixel_bomb()}), "error", "cannot decode image"),
        "truncated.tar.xz": (xz[: len(xz) // 2], "error", "cannot read archive"),
        "truncated.tar": (tar_of(g)[:3000], "error", "cannot read archive"),
        "not_image.tar": (tar_of({**g, "toy/c0/fake.jpg": b"this is not a JPEG\n" * 50}), "error",
                          "cannot decode image"),
        "garbage.tar.gz": (os.urandom(4096), "error", "cannot read archive"),
        "no_images.tar": (tar_of({"toy/readme.txt": b"hello"}), "error", "no images found"),
        "empty.tar": (b"", "error", "cannot read archive"),
    }


def folders(root: Path, outside: Path) -> dict[str, tuple[Path, str, str]]:
    def base(name: str) -> Path:
        d = root / name
        for rel, data in _good().items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(data)
        return d / "toy"

    out: dict[str, tuple[Path, str, str]] = {}
    (outside / "secret.png").write_bytes(png(99))
    d = base("symlink_out")
    os.symlink(outside / "secret.png", d / "c0" / "secret.png")
    os.symlink("/dev/zero", d / "c1" / "zero.jpg")
    os.symlink(d / "c0" / "nowhere.png", d / "c1" / "dangling.png")
    out["dir_symlinks_out"] = (d, "ok:6", "")
    d = base("fifo")
    os.mkfifo(d / "c0" / "pipe.jpg")  # reading it would block forever
    out["dir_fifo"] = (d, "ok:6", "")
    if os.geteuid() == 0:
        d = base("device")
        os.mknod(d / "c1" / "null.png", 0o600 | 0o020000, os.makedev(1, 3))  # /dev/null
        out["dir_device"] = (d, "ok:6", "")
    d = base("not_image")
    (d / "c0" / "zz.jpg").write_text("plain text\n")
    out["dir_not_image"] = (d, "error", "cannot decode image")
    d = base("pixel_bomb")
    (d / "c1" / "zz.png").write_bytes(_pixel_bomb())
    out["dir_pixel_bomb"] = (d, "error", "cannot decode image")
    return out


CHILD = r"""
import json, resource, signal, sys, traceback
resource.setrlimit(resource.RLIMIT_AS, (int(sys.argv[2]), int(sys.argv[2])))
from edgecv.data import load_dataset
from edgecv.errors import UserError
def alarm(*_): raise TimeoutError("hang")
signal.signal(signal.SIGALRM, alarm)
for name, path in json.loads(sys.argv[1]):
    signal.alarm(60)
    try:
        ds, _ = load_dataset(path, "test")
        n = sum(1 for i in range(len(ds)) if ds[i] is not None)
        res = ["ok", n]
    except UserError as e:
        res = ["error", str(e)]
    except BaseException as e:
        res = ["crash", f"{type(e).__name__}: {e}"[:300] + " | " + traceback.format_exc()[-400:]]
    signal.alarm(0)
    print(json.dumps([name, *res]), flush=True)
"""


def _tree(root: Path, skip: Path) -> dict[str, int]:
    return {str(p): p.stat().st_size for p in root.rglob("*")
            if p.is_file() and not p.is_relative_to(skip) and not p.is_symlink()}


def test_hostile_archives_and_folders_load_safely_or_fail_in_one_line(tmp_path):
    inp, outside, cache = tmp_path / "inputs", tmp_path / "outside", tmp_path / "cache"
    work = tmp_path / "work" / "deeper"
    for d in (inp, outside, work):
        d.mkdir(parents=True)
    cases: dict[str, tuple[str, str, str]] = {}
    for name, (data, want, msg) in archives(outside).items():
        (inp / name).write_bytes(data)
        cases[name] = (str(inp / name), want, msg)
    for name, (path, want, msg) in folders(tmp_path / "dirs", outside).items():
        cases[name] = (str(path), want, msg)
    before = _tree(tmp_path, cache)
    env = dict(os.environ, EDGECV_CACHE=str(cache), PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-c", CHILD, json.dumps([[n, c[0]] for n, c in cases.items()]),
                        str(AS_LIMIT)], capture_output=True, text=True, env=env, cwd=work, timeout=900)
    assert p.returncode == 0, p.stderr[-3000:]
    got = {r[0]: r[1:] for r in map(json.loads, p.stdout.splitlines())}
    assert set(got) == set(cases), p.stderr[-2000:]
    for name, (_, want, msg) in cases.items():
        kind, detail = got[name]
        if want.startswith("ok"):
            assert [kind, detail] == ["ok", int(want[3:])], (name, kind, detail)
        else:
            assert kind == "error" and msg in detail and "\n" not in detail, (name, kind, detail)
    assert _tree(tmp_path, cache) == before, "a file was written outside the cache"
    assert not (outside / "abs.png").exists() and not (tmp_path / "work" / "evil.png").exists()
    assert "Traceback" not in p.stderr


def test_hostile_archive_via_cli_is_one_line(tmp_path, capsys, monkeypatch):
    from edgecv.cli import main

    monkeypatch.setenv("EDGECV_CACHE", str(tmp_path / "cache"))
    arch = tmp_path / "evil.tar"
    arch.write_bytes(tar_of({**_good(), "../evil.png": png()}))
    code = main(["eval", "lenet5", "--data", str(arch), "--limit", "2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.count("\n") == 0 and "unsafe member name" in err, err
    assert not (tmp_path.parent / "evil.png").exists()
