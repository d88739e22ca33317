"""SIGKILL edgecv commands at random moments; check nothing half-written survives and the next run is exact.

    .venv/bin/python scripts/kill_harness.py                 # full run: 6 jobs x 10 kills, ~8 min on 2 shared cores
    .venv/bin/python scripts/kill_harness.py --kills 2 --jobs compress,cache --json r.json

For each job (compress, export, train, decompress, cache = a dataset archive's first load, download =
edgecv.hub.fetch from a throttled loopback http.server): one uninterrupted run gives the reference
bytes, a second must reproduce them and gives the (warm) duration D. Then each kill point starts the
command, waits a seeded random delay (half uniform in [0, D], half in the last quarter, where files
are written) and SIGKILLs its process group; a run that finished before its kill is not counted,
shortens D, and is retried (up to 3x the kills). After every kill the output path must hold nothing
or exactly the reference bytes (a checkpoint never without its JSON sidecar), and every committed
cache entry must equal the reference entry byte for byte; the temp files found after each kill are
counted. Finally the leftover temp files are aged past edgecv.fsutil.GRACE_S and one more
uninterrupted run must reproduce the reference bytes and remove them. Children run with TMPDIR,
EDGECV_CACHE and the outputs inside one work folder.
"""
from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import json
import os
import random
import signal
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PY = sys.executable
TEMP_GLOBS = (".*.tmp", ".*.part")


@dataclass
class Job:
    name: str
    argv: list[str]
    outputs: list[Path]  # files compared byte for byte with the reference run
    cache: bool = False  # also check every committed dataset-cache entry
    ref: dict[str, bytes] = field(default_factory=dict)
    ref_cache: dict[str, bytes] = field(default_factory=dict)
    duration: float = 0.0


def _edgecv(*args: str) -> list[str]:
    return [PY, "-m", "edgecv.cli", *args]


def make_archive(path: Path, n: int = 2400, seed: int = 0) -> None:
    """A small image-folder archive (train/test x 4 classes, 32x32 PNG) for the cache job."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tf:
        for i in range(n):
            split, cls = ("train" if i % 5 else "test"), f"c{i % 4}"
            buf = io.BytesIO()
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
            info = tarfile.TarInfo(f"toy/{split}/{cls}/{i:05d}.png")
            info.size = buf.tell()
            buf.seek(0)
            tf.addfile(info, buf)


class _Slow(http.server.SimpleHTTPRequestHandler):
    """Serves files in small chunks with pauses, so a download spans many kill points."""

    chunk, pause = 64 << 10, 0.01

    def copyfile(self, source, outputfile):  # noqa: D102
        while True:
            block = source.read(self.chunk)
            if not block:
                return
            try:
                outputfile.write(block)
            except (BrokenPipeError, ConnectionResetError):  # the client was killed: expected here
                return
            time.sleep(self.pause)

    def log_message(self, *args):  # quiet
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = lambda *a, **kw: _Slow(*a, directory=str(folder), **kw)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def build_jobs(work: Path, names: list[str], url: str | None, blob_sha: str | None) -> list[Job]:
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    edc = work / "src.edc"
    jobs = {
        "compress": Job("compress", _edgecv("compress", "lenet5", "--seed", "0", "-o", str(out / "l.edc")),
                        [out / "l.edc"]),
        "export": Job("export", _edgecv("export", "lenet5", "--format", "onnx", "-o", str(out / "l.onnx")),
                      [out / "l.onnx"]),
        "train": Job("train", _edgecv("train", "lenet5", "--data", "mnist", "--epochs", "1", "--max-steps", "4",
                                      "--limit", "512", "--batch-size", "64", "-o", str(out / "t.safetensors")),
                     [out / "t.safetensors", out / "t.json"]),
        "decompress": Job("decompress", _edgecv("decompress", str(edc), "-o", str(out / "d.safetensors")),
                          [out / "d.safetensors", out / "d.json"]),
        "cache": Job("cache", [PY, "-c", "import sys, pathlib; from edgecv.data.folder import read_archive; "
                                         "d = read_archive(pathlib.Path(sys.argv[1])); "
                                         "print(sorted(d.splits), len(d.splits['train']))",
                               str(work / "toy.tar.gz")], [], cache=True),
        "download": Job("download", [PY, "-c", "import sys; from edgecv.hub import fetch; "
                                               "fetch(sys.argv[1], sys.argv[2], sha256=sys.argv[3])",
                                     f"{url}/blob.bin", str(out / "blob.bin"), str(blob_sha)], [out / "blob.bin"]),
    }
    return [jobs[n] for n in names]


def _env(work: Path) -> dict[str, str]:
    (work / "tmp").mkdir(exist_ok=True)
    return dict(os.environ, TMPDIR=str(work / "tmp"), EDGECV_CACHE=str(work / "cache"), OMP_NUM_THREADS="1",
                PYTHONHASHSEED="0", PYTHONPATH=str(REPO))


def _cache_files(work: Path) -> dict[str, bytes]:
    """Bytes of every committed entry (one with meta.json) of the dataset cache."""
    files: dict[str, bytes] = {}
    root = work / "cache" / "datasets"
    for entry in sorted(root.glob("*")) if root.is_dir() else []:
        if (entry / "meta.json").is_file():
            meta = json.loads((entry / "meta.json").read_text())
            files[f"{entry.name}/meta.json"] = (entry / "meta.json").read_bytes()
            for a in meta["arrays"]:
                files[f"{entry.name}/{a}.npy"] = (entry / f"{a}.npy").read_bytes()
    return files


def _clear(job: Job, work: Path) -> None:
    for p in job.outputs:
        p.unlink(missing_ok=True)
        p.with_suffix(".json").unlink(missing_ok=True)
    if job.cache:
        import shutil

        shutil.rmtree(work / "cache" / "datasets", ignore_errors=True)


def _run(job: Job, env: dict[str, str], work: Path) -> float:
    t0 = time.monotonic()
    p = subprocess.run(job.argv, env=env, cwd=work, capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise SystemExit(f"{job.name}: uninterrupted run failed ({p.returncode}): {p.stderr[-2000:]}")
    return time.monotonic() - t0


def content(path: Path, data: bytes) -> bytes | tuple:
    """What must be identical: the bytes; for safetensors the parsed header and the tensor bytes
    (safetensors writes its metadata map in hash order, which differs from process to process, and
    train records its wall time there)."""
    if path.suffix == ".json":  # a checkpoint's sidecar: timings differ run to run
        try:
            return json.dumps(_untimed(json.loads(data)), sort_keys=True)
        except ValueError:
            return data
    if path.suffix != ".safetensors" or len(data) < 8:
        return data
    n = int.from_bytes(data[:8], "little")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError:
        return data
    meta = header.get("__metadata__") or {}
    header["__metadata__"] = {k: v for k, v in meta.items() if not k.endswith("seconds")}
    return json.dumps(header, sort_keys=True), data[8 + n:]


def _untimed(obj):
    if isinstance(obj, dict):
        return {k: _untimed(v) for k, v in obj.items() if not k.endswith(("seconds", "_per_s"))}
    return [_untimed(v) for v in obj] if isinstance(obj, list) else obj


def _check(job: Job, work: Path, problems: list[str], when: str) -> int:
    """Outputs absent or exactly the reference; committed cache entries exact. Returns #complete outputs."""
    complete = 0
    for p in job.outputs:
        if p.exists():
            if content(p, p.read_bytes()) != content(p, job.ref[p.name]):
                problems.append(f"{job.name} {when}: {p.name} exists but differs from the reference "
                                f"({p.stat().st_size} vs {len(job.ref[p.name])} bytes)")
            else:
                complete += 1
            if p.suffix == ".safetensors" and not p.with_suffix(".json").exists():
                problems.append(f"{job.name} {when}: {p.name} exists without its metadata sidecar")
    if job.cache:
        files = _cache_files(work)
        for k, v in files.items():
            if job.ref_cache.get(k) != v:
                problems.append(f"{job.name} {when}: committed cache file {k} differs from the reference")
        complete += bool(files)
    return complete


def _leftovers(work: Path) -> list[Path]:
    found = [p for g in TEMP_GLOBS for p in work.rglob(g)]
    found += [p for p in (work / "tmp").glob("edgecv-*")]
    return sorted(set(found))


def _age(paths: list[Path], seconds: float = 3600) -> None:
    old = time.time() - seconds
    for p in paths:
        targets = [p, *(p.rglob("*") if p.is_dir() else [])]
        for t in targets:
            try:
                os.utime(t, (old, old), follow_symlinks=False)
            except OSError:
                pass


def run(names: list[str], kills: int, seed: int, work: Path, log=print, warm: bool = True) -> dict:
    """Run the jobs ``names`` with ``kills`` kill points each; the report. ``warm=False`` (CI) skips
    the second uninterrupted run (kill delays are then drawn from the cold run's duration)."""
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    env = _env(work)
    srv = url = sha = None
    if "cache" in names and not (work / "toy.tar.gz").exists():
        make_archive(work / "toy.tar.gz")
    if "download" in names:
        site = work / "site"
        site.mkdir(exist_ok=True)
        blob = random.Random(seed).randbytes(6 << 20)
        (site / "blob.bin").write_bytes(blob)
        sha = hashlib.sha256(blob).hexdigest()
        srv, url = serve(site)
    if "decompress" in names and not (work / "src.edc").exists():
        subprocess.run(_edgecv("compress", "lenet5", "-o", str(work / "src.edc")), env=env, check=True,
                       capture_output=True, cwd=work)
    jobs = build_jobs(work, names, url, sha)
    report: dict = {"seed": seed, "kills_per_job": kills, "jobs": {}, "problems": []}
    problems: list[str] = report["problems"]
    try:
        for job in jobs:
            _clear(job, work)
            cold = _run(job, env, work)  # cold (first imports, page cache); its output is the reference
            job.ref = {p.name: p.read_bytes() for p in job.outputs}
            job.ref_cache = _cache_files(work) if job.cache else {}
            job.duration = cold
            if warm:
                _clear(job, work)
                job.duration = _run(job, env, work)  # warm: the duration kill delays are drawn from
                _check(job, work, problems, "second uninterrupted run")  # the command is deterministic
            stats = {"reference_s": round(job.duration, 2), "kill_points": 0, "killed_running": 0,
                     "finished_before_kill": 0, "complete_after_kill": 0, "absent_after_kill": 0,
                     "temp_files_after_kills": 0, "temp_files_left": 0}
            attempt = 0
            while stats["kill_points"] < kills and attempt < 3 * kills:
                _clear(job, work)
                d = job.duration
                delay = rng.uniform(0.05, d) if attempt % 2 == 0 else rng.uniform(0.75 * d, d)
                attempt += 1
                t0 = time.monotonic()
                proc = subprocess.Popen(job.argv, env=env, cwd=work, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
                try:
                    proc.wait(timeout=delay)
                    running = False  # done before the kill: not a kill point; aim earlier next time
                    job.duration = min(job.duration, 0.95 * (time.monotonic() - t0))
                except subprocess.TimeoutExpired:
                    running = True
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                stats["killed_running" if running else "finished_before_kill"] += 1
                stats["kill_points"] += running
                n = _check(job, work, problems, f"attempt {attempt} at {delay:.2f}s")
                if running:
                    stats["complete_after_kill" if n else "absent_after_kill"] += 1
                    stats["temp_files_after_kills"] += len(_leftovers(work))  # a later run may clean them first
                    stats.setdefault("kill_times_s", []).append(round(delay, 2))
            left = _leftovers(work)
            stats["temp_files_left"] = len(left)
            _age(left)  # as if the next run came later than edgecv.fsutil.GRACE_S
            _run(job, env, work)  # the next run: must succeed, be exact, and clean what the kills left
            _check(job, work, problems, "final run")
            if job.cache:
                for k in job.ref_cache:
                    if k not in _cache_files(work):
                        problems.append(f"cache final run: entry file {k} missing")
            still = [str(p.relative_to(work)) for p in _leftovers(work)]
            stats["temp_files_after_next_run"] = len(still)
            if still:
                problems.append(f"{job.name}: temp files not cleaned by the next run: {still[:5]}")
            report["jobs"][job.name] = stats
            log(f"{job.name}: {stats}")
    finally:
        if srv is not None:
            srv.shutdown()
            srv.server_close()
    report["total_kill_points"] = sum(s["kill_points"] for s in report["jobs"].values())
    report["total_killed_running"] = sum(s["killed_running"] for s in report["jobs"].values())
    report["total_temp_files_after_kills"] = sum(s["temp_files_after_kills"] for s in report["jobs"].values())
    return report


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", default="compress,export,train,decompress,cache,download")
    ap.add_argument("--kills", type=int, default=10, help="kill points per job")
    ap.add_argument("--seed", type=int, default=15)
    ap.add_argument("--work", default=None, help="work folder (default: a fresh temp folder)")
    ap.add_argument("--json", default=None, help="write the report here")
    a = ap.parse_args()
    work = Path(a.work) if a.work else Path(tempfile.mkdtemp(prefix="edgecv-killharness-"))
    rep = run(a.jobs.split(","), a.kills, a.seed, work)
    print(json.dumps({k: v for k, v in rep.items() if k != "jobs"}, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(rep, indent=1))
    return 1 if rep["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
