"""The one interface every local runner implements (torch, onnxruntime, LiteRT)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgecv.errors import UserError


class Runner:
    """Load a model once, then run one batch-1 inference per ``infer`` call.

    The harness times ``load`` (init), the first ``infer`` and then warm-up and measured runs.
    ``infer`` must return only when the result is ready (GPU runners synchronise).
    """

    name = "base"
    formats: tuple[str, ...] = ()

    def __init__(self, source: str | Path, *, device: str = "cpu", threads: int = 1,
                 input_size: tuple[int, ...] | None = None, precision: str | None = None,
                 weights: str | None = None, seed: int = 0) -> None:
        self.source = str(source)
        self.device = device
        self.threads = threads
        self.input_size = tuple(input_size) if input_size else None
        self.precision = precision
        self.weights = weights
        self.seed = seed
        if device not in ("cpu", "cuda"):
            raise UserError(f"device {device!r} is not a local device; use cpu, cuda or a profile from `edgecv devices`")

    def import_runtime(self) -> None:
        """Import the runtime (not timed as init: import cost is paid once per process)."""

    def load(self) -> None:
        raise NotImplementedError

    def prepare_inputs(self) -> None:
        """Make deterministic random inputs for the loaded model (outside the timed region)."""
        raise NotImplementedError

    def infer(self) -> Any:
        raise NotImplementedError

    def versions(self) -> dict[str, str]:
        return {}

    def info(self) -> dict[str, Any]:
        """Facts about the loaded model (input shape/dtype, provider...) for the report."""
        return {}

    def extra_memory(self) -> dict[str, float]:
        """Device memory the runtime reports (e.g. CUDA peak), in MB."""
        return {}


def random_input(shape: tuple[int, ...], dtype: np.dtype, seed: int = 0) -> np.ndarray:
    """Deterministic input of ``shape``/``dtype``: N(0,1) floats, uniform over the range for ints."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return rng.integers(info.min, int(info.max) + 1, size=shape, dtype=dtype)
    if dtype == np.bool_:
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    return rng.standard_normal(shape).astype(dtype)
