"""Error-compensating weight sharing: each layer's k-means assignment made so that the layer keeps
its output, from a few hundred unlabeled images (GPTQ, Frantar et al. ICLR 2023, on a k-means
codebook as in GPTVQ, van Baalen et al. 2024).

Rounding every weight to its nearest centroid independently (``share``'s assignment) is optimal
for the weights but not for the layer's output: at 4 bits MobileNetV2 falls from 87% to 18% top-1
(measured, after ``equalize``). GPTQ instead quantizes one input column at a time and moves the
not-yet-quantized columns to cancel the output error it just made, using the inverse Hessian
``H = X^T X`` of the layer's inputs ``X`` (Optimal Brain Surgeon's update, one column per step):

    e = (w[:, i] - q[:, i]) / U[i, i];   w[:, i+1:] -= e U[i, i+1:]     (U: Cholesky of H^-1, upper)

The Hessian comes from the layer's inputs in the model shared so far, so each layer is assigned
for the inputs it will really see. In a pruned layer the pruned positions are "quantized" to 0
the same way (SparseGPT), so the mask is kept. After the assignment the centroids themselves are
re-solved by least squares for the layer output (with the assignment fixed the output is linear
in the K centroids), and kept only when that lowers the error. A bias (or, for a bias-free conv before a BatchNorm, that BN's running mean),
is a float column processed last: it absorbs what is left.

Measured on Google's MobileNetV2 (after ``equalize``; 1x1 convs at 5 bits, the rest 8; 256 Tiny
ImageNet photos; top-1 on 300 ImageNet samples, 87.3% unshared): rounding 71.7%; GPTQ with ridge
0.01 86.3%, with ridge 1.0 88.3%. Refitting each layer first to the reference output by least
squares (ridge toward zero, ``compensate_refit``) fell to 0.0-66.7%: 64-px photos upsampled carry
little high-frequency energy, so the fit moves weights in directions the calibration images do
not excite but real photos do. A large ridge keeps GPTQ's updates inside what the images measure.

Handled: the layers ``refit.refittable`` accepts (Linear, 1x1 convs); others get the plain
nearest-centroid assignment. Written here because no maintained library does GPTQ on a shared
k-means codebook with a sparsity mask for convolutions (nncf's and auto-gptq's GPTQ target uniform
integer grids in transformers).
"""
from __future__ import annotations

import logging

import torch

from edgecv.compress.base import SharedWeight
from edgecv.compress.share import kmeans_1d, nearest

log = logging.getLogger(__name__)


def _inverse_cholesky(h: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, damping raised until it is definite."""
    eye = torch.eye(len(h), dtype=h.dtype)
    lam = damp * float(h.diagonal().mean()) + 1e-12
    for _ in range(8):
        try:
            inv = torch.cholesky_inverse(torch.linalg.cholesky(h + lam * eye))
            return torch.linalg.cholesky(inv, upper=True)
        except RuntimeError:  # not positive definite in float64: more damping
            lam *= 10
    raise RuntimeError("gptq: layer input statistics are degenerate")


@torch.no_grad()
def gptq_columns(w: torch.Tensor, h: torch.Tensor, codebook: torch.Tensor, mask: torch.Tensor | None,
                 float_cols: int = 0, damp: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """(quantized copy of ``w`` (rows, features; float64) with error compensation under ``h``, the
    codebook index of every quantized position, -1 where pruned).

    ``codebook``: sorted centroids the kept weights are rounded to (for a sparse layer without the
    reserved 0.0); ``mask``: kept positions (pruned ones become exactly 0); the last ``float_cols``
    columns (a bias as a constant input) are never quantized and go last."""
    f = w.shape[1]
    nq = f - float_cols
    order = torch.cat([torch.argsort(h.diagonal()[:nq], descending=True, stable=True),  # GPTQ's act-order
                       torch.arange(nq, f)])
    w = w[:, order].clone()
    u = _inverse_cholesky(h[order][:, order], damp)
    mk = None if mask is None else mask[:, order[:nq]]
    cb = codebook.double()
    idx = torch.empty(w.shape[0], nq, dtype=torch.long)
    for i in range(nq):
        col = w[:, i]
        j = nearest(col, cb)
        q = cb[j]
        if mk is not None:
            q = torch.where(mk[:, i], q, torch.zeros_like(q))
            j = torch.where(mk[:, i], j, torch.full_like(j, -1))
        idx[:, i] = j
        err = (col - q) / u[i, i]
        w[:, i] = q
        w[:, i + 1:] -= err[:, None] * u[i, i + 1:][None, :]
    out, where = torch.empty_like(w), torch.empty_like(idx)
    out[:, order] = w
    where[:, order[:nq]] = idx
    return out, where


def _output_error(w: torch.Tensor, w_ref: torch.Tensor, h: torch.Tensor) -> float:
    d = w - w_ref
    return float(((d @ h) * d).sum())


@torch.no_grad()
def _solve_centroids(assign: torch.Tensor, k: int, w_ref: torch.Tensor, h: torch.Tensor, fixed: torch.Tensor,
                     first: int) -> torch.Tensor | None:
    """Centroids c[first:] minimising sum_r (W_r - W*_r)^T H (W_r - W*_r) with W = c[assign] on the
    quantized columns and ``fixed`` (the float columns) elsewhere; None when degenerate."""
    nq = assign.shape[1]
    ind = [(assign == j).double() for j in range(first, k)]
    # d/dc_k = 0:  sum_r a_kr^T (H_qq W_r + H_qf f_r - (H W*_r)_q) = 0   (H symmetric)
    resid = (w_ref @ h)[:, :nq] - fixed @ h[nq:, :nq]
    hq = h[:nq, :nq]
    g = torch.zeros(len(ind), len(ind), dtype=torch.float64)
    rhs = torch.stack([(a * resid).sum() for a in ind])
    for i, a in enumerate(ind):
        ah = a @ hq
        for j in range(i, len(ind)):
            g[i, j] = g[j, i] = (ah * ind[j]).sum()
    used = g.diagonal() > 0
    if not bool(used.any()):
        return None
    c = torch.zeros(len(ind), dtype=torch.float64)
    sub = g[used][:, used]
    sub = sub + 1e-9 * float(sub.diagonal().mean()) * torch.eye(len(sub), dtype=torch.float64)
    c[used] = torch.linalg.solve(sub, rhs[used])
    return c


@torch.no_grad()
def gptq_share(w_ref: torch.Tensor, h: torch.Tensor, bits: int, mask: torch.Tensor | None, *, float_cols: int = 0,
               damp: float = 0.01, seed: int = 0) -> tuple[SharedWeight, torch.Tensor, float]:
    """Share one layer: (SharedWeight of the weight's columns, the float columns after compensation,
    output error relative to nearest-centroid rounding of the same codebook).

    ``w_ref`` (rows, features + float_cols) is the least-squares target weight, ``h`` the Hessian of
    the layer's current inputs (with the constant column for a bias)."""
    nq = w_ref.shape[1] - float_cols
    wq = w_ref[:, :nq]
    sparse = mask is not None
    vals = wq[mask] if sparse else wq.reshape(-1)
    fit = kmeans_1d(vals.float(), 2 ** bits - (1 if sparse else 0), seed=seed).double()
    # the plain assignment, for the report and as a floor
    near = nearest(wq, fit)
    plain = fit[near]
    if sparse:
        plain = torch.where(mask, plain, torch.zeros_like(plain))
    base = _output_error(torch.cat([plain, w_ref[:, nq:]], 1), w_ref, h)
    q, idx = gptq_columns(w_ref, h, fit, mask, float_cols, damp)
    err = _output_error(q, w_ref, h)
    full = torch.cat([torch.zeros(1, dtype=torch.float64), fit]) if sparse else fit
    first = 1 if sparse else 0
    assign = idx + first  # pruned: -1 + 1 = 0, the reserved 0.0
    cb = full.clone()
    c = _solve_centroids(assign, len(full), w_ref, h, q[:, nq:], first) if len(fit) <= 64 else None
    if c is not None:
        trial = full.clone()
        trial[first:] = c
        q2 = torch.cat([trial[assign], q[:, nq:]], 1)
        e2 = _output_error(q2, w_ref, h)
        if e2 < err:
            cb, err = trial, e2
    if err > base:  # compensation never makes a layer worse than rounding
        assign = near + first
        if sparse:
            assign = torch.where(mask, assign, torch.zeros_like(assign))
        cb, err, q = full, base, torch.cat([plain, w_ref[:, nq:]], 1)
    # the codec and `nearest` want a sorted codebook: sort the kept centroids, remap the indices
    order = torch.cat([torch.arange(first), first + torch.argsort(cb[first:], stable=True)])
    remap = torch.empty_like(order)
    remap[order] = torch.arange(len(order))
    sw = SharedWeight(codebook=cb[order].float(), assign=remap[assign], bits=bits, sparse=sparse)
    return sw, q[:, nq:], err / max(base, 1e-30)
