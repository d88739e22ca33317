"""The model zoo: every architecture of the seed lectures, one file per family.

Importing this package registers every builder (explicit imports below).
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from edgecv.errors import UserError
from edgecv.models._counting import count_macs, count_params
from edgecv.models._registry import MODELS, ModelSpec, register_model

# Registration by explicit import: one module per family.
from edgecv.models import lenet  # noqa: F401,E402
from edgecv.models import alexnet  # noqa: F401,E402
from edgecv.models import vgg  # noqa: F401,E402
from edgecv.models import googlenet  # noqa: F401,E402
from edgecv.models import inception  # noqa: F401,E402
from edgecv.models import xception  # noqa: F401,E402
from edgecv.models import resnet  # noqa: F401,E402
from edgecv.models import resnet_cifar  # noqa: F401,E402
from edgecv.models import densenet  # noqa: F401,E402
from edgecv.models import squeezenet  # noqa: F401,E402
from edgecv.models import shufflenet  # noqa: F401,E402
from edgecv.models import mobilenet  # noqa: F401,E402
from edgecv.models import mobilenet_v3  # noqa: F401,E402
from edgecv.models import mnasnet  # noqa: F401,E402
from edgecv.models import efficientnet  # noqa: F401,E402
from edgecv.models import convnext  # noqa: F401,E402

__all__ = [
    "MODELS",
    "ModelSpec",
    "register_model",
    "list_models",
    "get_spec",
    "create_model",
    "model_info",
    "count_params",
    "count_macs",
]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names (optionally filtered by an fnmatch ``pattern``)."""
    import fnmatch

    names = sorted(MODELS.names())
    return [n for n in names if pattern is None or fnmatch.fnmatch(n, pattern)]


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name`` (aliases allowed); unknown names list close matches."""
    return MODELS.get(name)


def create_model(name: str, *, num_classes: int | None = None, **kwargs: Any) -> nn.Module:
    """Build a zoo model. ``num_classes`` defaults to the model's dataset (1000 for ImageNet)."""
    spec = MODELS.get(name)
    kw = {**spec.kwargs, **kwargs}
    model = spec.fn(num_classes=spec.num_classes if num_classes is None else num_classes, **kw)
    model.edgecv_name = spec.name  # type: ignore[assignment]
    return model


_ZOO_HASH: str | None = None


def _counts(spec: ModelSpec, size: tuple[int, ...], kwargs: dict[str, Any]) -> tuple[int, int]:
    """(params, MACs), cached on disk (~/.cache/edgecv) keyed by the model's source code, so that
    `edgecv models` does not re-trace 80 models on every call."""
    import hashlib
    import json
    import os
    from pathlib import Path

    global _ZOO_HASH
    if _ZOO_HASH is None:  # every model file: families import each other's blocks
        h = hashlib.sha256(torch.__version__.encode())
        for f in sorted(Path(__file__).parent.glob("*.py")):
            h.update(f.read_bytes())
        _ZOO_HASH = h.hexdigest()
    key = hashlib.sha256(f"{spec.name}|{size}|{sorted(kwargs.items())}|{_ZOO_HASH}".encode()).hexdigest()[:24]
    cache = Path(os.environ.get("EDGECV_CACHE", Path.home() / ".cache" / "edgecv")) / "model_counts" / f"{key}.json"
    try:
        d = json.loads(cache.read_text())
        return int(d["params"]), int(d["macs"])
    except (OSError, ValueError, KeyError):
        pass
    with torch.device("meta"):
        model = create_model(spec.name, **kwargs)
    params, macs = count_params(model), count_macs(model, size)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"params": params, "macs": macs}))
        os.replace(tmp, cache)
    except OSError:
        pass  # an unwritable cache only costs time
    return params, macs


def model_info(name: str, *, input_size: tuple[int, int, int] | None = None, **kwargs: Any) -> dict[str, Any]:
    """Params, MACs at the default (or given) input size, input size, family and paper."""
    spec = MODELS.get(name)
    size = tuple(input_size or spec.input_size)
    params, macs = _counts(spec, size, kwargs)
    return {
        "name": spec.name,
        "family": spec.family,
        "params": params,
        "macs": macs,
        "input_size": list(size),
        "num_classes": kwargs.get("num_classes", spec.num_classes),
        "dataset": spec.dataset,
        "paper": spec.paper,
        "torchvision_compatible": spec.torchvision,
    }


def check_state_dict(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "checkpoint") -> None:
    """Raise a one-line UserError naming the first mismatching keys/shapes, else return."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {', '.join(missing[:3])}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected[:3])}")
    if shapes:
        problems.append(f"shape mismatch ({len(shapes)}): {'; '.join(shapes[:3])}")
    if problems:
        name = getattr(model, "edgecv_name", type(model).__name__)
        raise UserError(
            f"{source} does not fit {name}: {' | '.join(problems)} "
            "(check the model name, or that the file was saved from this model)"
        )
