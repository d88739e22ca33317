"""Fuzz the .edc decoder (edgecv.codec.decode_model + inspect) under a 2 GiB address-space limit.

    .venv/bin/python scripts/fuzz_edc.py                  # 10,000 mutated + 2,000 structured cases
    .venv/bin/python scripts/fuzz_edc.py --cases 300 --structured 100 --seed 1

Two generators, both seeded: (1) mutations of a corpus of valid files covering every record kind
(raw of each dtype, dense / sparse / sparse with live lines codebooks, affine per-channel and
per-tensor, fixed-width and Huffman streams): bit flips, byte sets, inserts, deletes, truncation,
splices, varint bombs; the CRC-32 is recomputed for 90 % of them so the parser past the checksum
is what gets tested. (2) hypothesis-built records from the container's fields (tag, ndim, dims,
widths, K, N, Huffman tables) with a valid header and checksum. atheris is used for (1) instead
when it is installed (--atheris). Every case must decode or raise CodecError; anything else
(another exception, a hang past 10 s, a crash, MemoryError) is a failure, saved under --out.
The cases run in a child process with RLIMIT_AS = 2 GiB. Exit 0 when no failure was found.
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

AS_LIMIT = 2 << 30
CASE_TIMEOUT_S = 10
MAX_NUMEL = 1 << 24  # what a caller decoding untrusted files passes (docs/format.md)


def corpus() -> list[bytes]:
    import numpy as np
    import torch

    from edgecv.codec import AffineCode, LayerCode, encode_model

    rng = np.random.default_rng(0)
    files = []
    raw = {"f32": torch.randn(3, 4), "f16": torch.randn(5).half(), "bf16": torch.randn(2, 2).bfloat16(),
           "f64": torch.randn(2).double(), "i64": torch.arange(4), "i8": torch.tensor([-3, 4], dtype=torch.int8),
           "u8": torch.tensor([1, 255], dtype=torch.uint8), "b": torch.tensor([True, False]),
           "scalar": torch.tensor(1.5)}
    files.append(encode_model(raw, {"model": "fuzz", "n": 1}))
    for huff in (False, True):
        dense = LayerCode((4, 6), np.linspace(-1, 1, 8), 3, rng.integers(0, 8, 24), None, huffman=huff)
        pos = np.sort(rng.choice(400, 37, replace=False))
        sparse = LayerCode((400,), np.r_[0.0, np.linspace(-1, 1, 15)], 4, rng.integers(1, 16, 37), pos, index_bits=3,
                           huffman=huff)
        # a 2-D layer with dead rows and columns: the encoder picks the live-lines layout
        w = np.zeros((16, 20))
        w[2:5, 3:9] = 1
        pos2 = np.flatnonzero(w)
        lines = LayerCode((16, 20), np.array([0.0, -0.5, 0.25, 1.0]), 2, rng.integers(1, 4, pos2.size), pos2, index_bits=2,
                          huffman=huff)
        aff = AffineCode((4, 3), 8, np.array([0.1, 0.2, 0.3, 0.4], np.float32), np.array([127, 120, 130, 127]),
                         rng.integers(0, 255, 12), huffman=huff)
        aff1 = AffineCode((6,), 4, np.array([0.5], np.float32), np.array([7]), rng.integers(0, 16, 6), huffman=huff)
        skew = LayerCode((300,), np.linspace(-1, 1, 32), 5, np.where(rng.random(300) < 0.9, 3, rng.integers(0, 32, 300)),
                         None, huffman=huff)
        files.append(encode_model({"dense": dense, "sparse": sparse, "lines": lines, "aff": aff, "aff1": aff1,
                                   "skew": skew, "bias": torch.randn(4)}, {"model": "fuzz", "huffman": huff}))
    files.append(encode_model({}, {}))
    return files


def fix_crc(data: bytes) -> bytes:
    if len(data) < 13:
        return data
    return data[:9] + struct.pack("<I", zlib.crc32(data[13:]) & 0xFFFFFFFF) + data[13:]


def mutate(data: bytes, rng: random.Random, corpus_: list[bytes]) -> bytes:
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 3, 8))):
        op = rng.randrange(9)
        i = rng.randrange(len(b)) if b else 0
        if op == 0 and b:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 3 and b:
            del b[i:i + rng.randrange(1, 17)]
        elif op == 4:
            del b[rng.randrange(len(b) + 1):]
        elif op == 5:  # splice with another corpus file
            o = rng.choice(corpus_)
            j = rng.randrange(len(o) + 1)
            b[i:] = o[j:]
        elif op == 6:  # a huge varint where a count or dim would be
            b[i:i + 1] = b"\xff" * rng.randrange(1, 10) + b"\x7f"
        elif op == 7 and len(b) > 4:
            j = rng.randrange(len(b) - 4)
            b[j:j + 4] = struct.pack("<I", rng.choice((0, 1, 2**31 - 1, 2**32 - 1, rng.randrange(2**32))))
        elif op == 8 and b:
            b[i:i] = b[i:i + rng.randrange(1, 64)]  # duplicate a stretch
    out = bytes(b)
    return fix_crc(out) if rng.random() < 0.9 else out


def check(data: bytes) -> str:
    """'ok' or 'rejected'; any other outcome raises (a finding)."""
    from edgecv.codec import CodecError, decode_model, inspect

    try:
        decode_model(data, max_numel=MAX_NUMEL)
        inspect(data)
        return "ok"
    except CodecError as e:
        if "\n" in str(e):
            raise AssertionError(f"CodecError message spans lines: {str(e)[:200]!r}") from None
        return "rejected"


def _timeout(*_):
    raise TimeoutError(f"case took over {CASE_TIMEOUT_S} s")


def structured(n: int, seed: int, stats: dict, record) -> None:
    """hypothesis: files assembled field by field (valid magic, version, checksum, meta)."""
    from hypothesis import HealthCheck, given, settings, strategies as st

    from edgecv.codec.bitpack import varint

    def vint(draw, hi):
        return varint(draw(st.one_of(st.integers(0, 4), st.integers(0, hi), st.just(2**63 - 1), st.integers(0, 2**40))))

    @st.composite
    def record_bytes(draw):
        name = draw(st.binary(min_size=0, max_size=6))
        tag = draw(st.one_of(st.sampled_from([0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x0E, 0x12, 0x16, 0x1E,
                                              0x0B, 0x90, 0x80]), st.integers(0, 255)))
        ndim = draw(st.one_of(st.integers(0, 3), st.integers(0, 255)))
        dims = b"".join(vint(draw, 64) for _ in range(min(ndim, 9)))
        body = draw(st.binary(max_size=64))
        widths = bytes([draw(st.integers(0, 255))])
        k = vint(draw, 40)
        nn = vint(draw, 200)
        parts = [varint(len(name)), name, bytes([tag, ndim]), dims]
        if draw(st.booleans()):
            parts += [widths, k, nn]
        return b"".join(parts) + body

    @settings(max_examples=n, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(st.lists(record_bytes(), max_size=3), st.sampled_from([b"{}", b'{"model":"x"}', b"[]", b'{"a":NaN}',
                                                                  b"\xff", b""]),
           st.integers(0, 5))
    def one(records, meta, count):
        body = varint(len(meta)) + meta + varint(count) + b"".join(records)
        data = fix_crc(b"EDGECVDC\x01" + b"\0\0\0\0" + body)
        record(data, "structured")

    random.seed(seed)
    one()


def child(cases: int, n_structured: int, seed: int, out: Path, use_atheris: bool) -> dict:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    signal.signal(signal.SIGALRM, _timeout)
    files = corpus()
    stats = {"mutated": 0, "structured": 0, "ok": 0, "rejected": 0, "failures": 0, "corpus_files": len(files)}
    failures: list[str] = []

    def record(data: bytes, kind: str) -> None:
        stats[kind] += 1
        signal.alarm(CASE_TIMEOUT_S)
        try:
            stats[check(data)] += 1
        except BaseException as e:  # noqa: BLE001 - a finding, whatever it is
            stats["failures"] += 1
            out.mkdir(parents=True, exist_ok=True)
            p = out / f"edc-{kind}-{stats[kind]}.bin"
            p.write_bytes(data)
            failures.append(f"{p}: {type(e).__name__}: {str(e)[:200]}")
        finally:
            signal.alarm(0)

    for f in files:
        assert check(f) == "ok"
    t0 = time.monotonic()
    if use_atheris:
        import atheris  # noqa: F401  (optional; mutation-guided by coverage)

        rng = random.Random(seed)
        atheris.Setup([sys.argv[0], f"-runs={cases}", f"-seed={seed}"],
                      lambda d: record(fix_crc(d) if rng.random() < 0.9 else d, "mutated"))
        atheris.Fuzz()
    else:
        rng = random.Random(seed)
        for _ in range(cases):
            record(mutate(rng.choice(files), rng, files), "mutated")
    structured(n_structured, seed, stats, record)
    stats["seconds"] = round(time.monotonic() - t0, 1)
    stats["failure_examples"] = failures[:20]
    return stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000, help="mutated files")
    ap.add_argument("--structured", type=int, default=2_000, help="hypothesis-built files")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="fuzz-findings", help="folder for failing inputs")
    ap.add_argument("--atheris", action="store_true", help="use atheris for the mutated cases")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.child:
        print("FUZZ-RESULT " + json.dumps(child(a.cases, a.structured, a.seed, Path(a.out), a.atheris)), flush=True)
        return 0
    argv = [sys.executable, __file__, "--child", "--cases", str(a.cases), "--structured", str(a.structured),
            "--seed", str(a.seed), "--out", a.out] + (["--atheris"] if a.atheris else [])
    return run_child(argv, 600 + (a.cases + a.structured) * 0.2, a.json)


def run_child(argv: list[str], timeout: float, json_out: str | None) -> int:
    """Run the fuzzing child (under the address-space limit), print and save its FUZZ-RESULT line;
    exit status 1 on any failure or when the child died. Shared with scripts/fuzz_recipe.py."""
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    res = next((json.loads(ln[12:]) for ln in p.stdout.splitlines() if ln.startswith("FUZZ-RESULT ")), None)
    if res is None:
        print(f"fuzz child died (exit {p.returncode}): {p.stderr[-2000:]}")
        return 1
    res["address_space_limit_bytes"] = AS_LIMIT
    print(json.dumps(res, indent=1))
    if json_out:
        Path(json_out).write_text(json.dumps(res, indent=1))
    return 1 if res["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
