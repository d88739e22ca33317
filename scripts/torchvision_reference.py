"""Dev-only: write tests/fixtures/torchvision_state_dicts.json.gz, the state_dict key order
and shapes of torchvision's models, the oracle for "torchvision checkpoints load strictly".

torchvision's PyPI wheel is a CUDA build that cannot be imported with the CPU torch we pin
("operator torchvision::nms does not exist"). Its model definitions are plain Python, so
this script unpacks the wheel to a temp dir, declares the custom-op schemas the package
registers at import (no kernels: the models never call them), and builds each model.
It also checks numerically that our model, loaded with torchvision's random weights, gives
torchvision's outputs. Usage: .venv/bin/python scripts/torchvision_reference.py [WHEEL]
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "fixtures" / "torchvision_state_dicts.json.gz"
SCHEMAS = [
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
    "_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width, int sampling_ratio, bool aligned) -> Tensor",
    "roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
    "_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio) -> (Tensor, Tensor)",
    "_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width) -> (Tensor, Tensor)",
    "_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, SymInt pooled_height, SymInt pooled_width, SymInt batch_size, SymInt channels, SymInt height, SymInt width) -> Tensor",
    "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor? bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> Tensor",
    "_deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, bool use_mask) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
]
# our name -> (torchvision builder, its kwargs, our kwargs)
SPECIAL = {
    "googlenet": ("googlenet", {"aux_logits": False, "init_weights": False}, {}),
    "inception_v3": ("inception_v3", {"aux_logits": False, "init_weights": False}, {}),
    "inception_v3+aux": ("inception_v3", {"aux_logits": True, "init_weights": False}, {"aux_logits": True}),
    "mobilenet_v2_035": ("mobilenet_v2", {"width_mult": 0.35}, {}),
    "mobilenet_v2_140": ("mobilenet_v2", {"width_mult": 1.4}, {}),
}


def import_torchvision(wheel: str | None):
    tmp = Path(tempfile.mkdtemp())
    if wheel is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(tmp), "torchvision"],
                       check=True)
        wheel = str(next(tmp.glob("torchvision-*.whl")))
    zipfile.ZipFile(wheel).extractall(tmp / "tv")
    sys.path.insert(0, str(tmp / "tv"))
    lib = torch.library.Library("torchvision", "DEF")
    for s in SCHEMAS:
        lib.define(s)
    import torchvision.models as tvm

    return tvm, lib


def main() -> None:
    import edgecv
    from edgecv.models import create_model, get_spec

    tvm, _lib = import_torchvision(sys.argv[1] if len(sys.argv) > 1 else None)
    fixture = {}
    for name in [n for n in edgecv.list_models() if get_spec(n).torchvision] + ["inception_v3+aux"]:
        tv_name, tv_kw, our_kw = SPECIAL.get(name, (name, {}, {}))
        tv = getattr(tvm, tv_name)(**tv_kw).eval()
        ours = create_model(name.split("+")[0], **our_kw).eval()
        sd = tv.state_dict()
        ours.load_state_dict(sd, strict=True)
        size = get_spec(name.split("+")[0]).small_input
        x = torch.randn(1, *size)
        with torch.no_grad():
            diff = (tv(x) - ours(x)).abs().max().item()
        status = "ok" if diff < 1e-4 else "OUTPUT MISMATCH"
        print(f"{name:28s} keys={len(sd):5d} max|diff|={diff:.2e} {status}")
        fixture[name] = {"torchvision": [tv_name, tv_kw], "ours": our_kw,
                         "state_dict": [[k, list(v.shape)] for k, v in sd.items()]}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(OUT, "wt") as f:
        json.dump(fixture, f, separators=(",", ":"), sort_keys=True)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(fixture)} models)")


if __name__ == "__main__":
    main()
