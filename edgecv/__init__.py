"""edgecv: classic and lightweight CNNs from a PyTorch definition to a small, fast, verified edge artifact.

The Python API (any ``nn.Module``, a zoo name or an import path wherever a model is taken)::

    res = edgecv.compress(net, "deep_compression_generic", train=train_loader, eval=test_loader)
    res.save("net.edc")
    net = edgecv.load("net.edc", model=Net())
    edgecv.export(net, "tflite", out="net.tflite", example_input=torch.randn(1, 1, 28, 28))
    edgecv.bench("net.tflite")

Names are imported on first use (``import edgecv`` does not import torch), so the command line
starts fast.
"""
from __future__ import annotations

import importlib
import logging
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "edgecv.models", "list_models": "edgecv.models", "model_info": "edgecv.models",
    "compress": "edgecv.api", "load": "edgecv.api", "export": "edgecv.api", "bench": "edgecv.api",
    "Result": "edgecv.api",
}
__all__ = ["Result", "bench", "compress", "create_model", "export", "list_models", "load", "model_info",
           "__version__"]

if TYPE_CHECKING:
    from edgecv.api import Result, bench, compress, export, load
    from edgecv.models import create_model, list_models, model_info


def __getattr__(name: str) -> Any:
    """Import the public names lazily (PEP 562). ``compress``/``export``/``bench`` are the subpackages
    of those names, which called are the API functions (:mod:`edgecv._callable`)."""
    if name in ("compress", "export", "bench"):  # the subpackage, callable as the API function
        return importlib.import_module(f"edgecv.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'edgecv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


logging.getLogger(__name__).addHandler(logging.NullHandler())
