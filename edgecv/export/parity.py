"""Parity of an exported file with its PyTorch model, checked on every export.

* fp32 (and fp16): the largest absolute logit difference, relative to the range of the
  PyTorch logits (so a model with large logits is not held to a tighter absolute bound).
* int8 and dynamic-range: top-1 agreement with the float PyTorch model on real images that
  were not used for calibration; top-1 against the labels is reported too when they apply.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from edgecv.errors import UserError

#: maximum (max |runtime - torch|) / (max(torch) - min(torch)) per float precision
REL_TOL = {"fp32": 1e-4, "fp16": 2e-2}
EXIT_PARITY = 3  # exit code of `edgecv export` when the check fails (as `compress --max-drop`)


class ParityError(UserError):
    """The exported file does not match the PyTorch model; nothing was written."""

    exit_code = EXIT_PARITY


def float_parity(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    if ref.shape != got.shape:
        raise ParityError(f"runtime output shape {got.shape} differs from PyTorch's {ref.shape}")
    max_abs = float(np.max(np.abs(ref.astype(np.float64) - got)))
    span = float(ref.max() - ref.min())
    rel = max_abs / span if span > 0 else max_abs
    return {"max_abs": max_abs, "logit_range": span, "rel": rel, "n_inputs": int(len(ref))}


def agreement(ref: np.ndarray, got: np.ndarray, labels: np.ndarray | None = None) -> dict[str, Any]:
    a, b = ref.argmax(1), got.argmax(1)
    d: dict[str, Any] = {"agreement_pct": 100.0 * float((a == b).mean()), "n_images": int(len(a))}
    if labels is not None:
        d["top1_float_pct"] = 100.0 * float((a == labels).mean())
        d["top1_export_pct"] = 100.0 * float((b == labels).mean())
    return d


def gate(precision: str, parity: dict[str, Any], min_agreement: float) -> tuple[bool, str]:
    """(passed, reason) for the parity dict of one export."""
    if precision in REL_TOL:
        tol = REL_TOL[precision]
        ok = parity["rel"] <= tol
        return ok, (f"max |runtime - torch| = {parity['max_abs']:.3g} is {parity['rel']:.2e} of the logit range "
                    f"{parity['logit_range']:.3g} ({'<=' if ok else '>'} {tol:g})")
    ok = parity["agreement_pct"] >= min_agreement
    return ok, (f"top-1 agreement with the float model {parity['agreement_pct']:.2f}% on {parity['n_images']} "
                f"real images ({'>=' if ok else '<'} {min_agreement:g}%)")
