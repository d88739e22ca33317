"""edgecv: classic and lightweight CNNs from a PyTorch definition to a small, fast, verified edge artifact."""
from __future__ import annotations

import logging

from edgecv.models import create_model, list_models, model_info

__version__ = "0.1.0"
__all__ = ["create_model", "list_models", "model_info", "__version__"]

logging.getLogger(__name__).addHandler(logging.NullHandler())
