"""Small pieces the hook methods share: per-sample measurement losses, their gradients, Adam, CG.

Everything is per sample: losses are ``[B]`` and summed before differentiation, optimiser statistics are
elementwise, and CG keeps one step size per sample, so a batch gives exactly its single-sample results.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from psld.operators.base import LinearOperator
from psld.protocols import Decoder
from psld.sampler import _per_sample


def measurement_loss(decoder: Decoder, operator: LinearOperator, y: Tensor, z: Tensor, loss: str) -> Tensor:
    """``L(y, A D(z))`` per sample (``||.||`` or ``||.||^2``), differentiable in ``z``."""
    return _per_sample(y - operator.forward(decoder(z)), loss)


def value_and_grad(fn: Callable[[Tensor], Tensor], z: Tensor) -> tuple[Tensor, Tensor]:
    """Per-sample values ``fn(z)`` ``[B]`` (detached) and ``grad_z sum(fn(z))``."""
    with torch.enable_grad():
        leaf = z.detach().requires_grad_(True)
        value = fn(leaf)
        (grad,) = torch.autograd.grad(value.sum(), leaf)
    return value.detach(), grad


def adam(
    fn: Callable[[Tensor], Tensor],
    z: Tensor,
    iters: int,
    lr: float,
    tol: float = 0.0,
    patience: int = 0,
) -> tuple[Tensor, Tensor]:
    """Up to ``iters`` Adam steps (betas 0.9/0.999, eps 1e-8, no weight decay) on ``sum(fn(z))`` from ``z``.

    Early stopping is per sample (so a batch still equals its singles): a sample freezes once its loss
    falls below ``tol``, or (``patience > 0``) once its loss exceeds its loss ``patience`` iterations
    earlier; the loop ends when every sample has stopped. Returns ``z`` and the last per-sample losses.
    """
    m = torch.zeros_like(z)
    v = torch.zeros_like(z)
    value = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
    active = torch.ones(z.shape[0], dtype=torch.bool, device=z.device)
    history: list[Tensor] = []
    for k in range(1, iters + 1):
        value, g = value_and_grad(fn, z)
        active &= ~(value < tol)
        if patience > 0:
            if len(history) >= patience:
                active &= ~(value > history[-patience])
            history.append(value)
        if not bool(active.any()):
            break
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        step = lr * (m / (1 - 0.9**k)) / ((v / (1 - 0.999**k)).sqrt() + 1e-8)
        z = (z - _col(active.to(z.dtype), z) * step).detach()
    return z, value


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(1)


def _col(v: Tensor, like: Tensor) -> Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def prox_data(operator: LinearOperator, y: Tensor, x0: Tensor, rho: float, cg_iters: int = 30) -> Tensor:
    """``argmin_x ||y - A x||^2 + rho ||x - x0||^2 = (A^T A + rho I)^{-1} (A^T y + rho x0)``.

    Closed form when ``A^T A`` is a projection (``adjoint_is_pinv``: masks, the identity), namely
    ``x0 + A^T (y - A x0) / (1 + rho)``; otherwise ``cg_iters`` conjugate-gradient steps from ``x0``.
    """
    if rho <= 0:
        raise ValueError(f"rho must be positive, got {rho!r}")
    if operator.adjoint_is_pinv:  # A^T A is a projection P: (P + rho I)^-1 in closed form
        return x0 + operator.adjoint(y - operator.forward(x0)) / (1.0 + rho)
    b = operator.adjoint(y) + rho * x0
    x = x0.clone()
    r = b - (operator.gram(x) + rho * x)
    p = r.clone()
    rr = _dot(r, r)
    for _ in range(cg_iters):
        Ap = operator.gram(p) + rho * p
        pAp = _dot(p, Ap)
        alpha = torch.where(
            pAp > 0, rr / torch.where(pAp > 0, pAp, torch.ones_like(pAp)), torch.zeros_like(rr)
        )
        x = x + _col(alpha, x) * p
        r = r - _col(alpha, x) * Ap
        rr_new = _dot(r, r)
        beta = torch.where(
            rr > 0, rr_new / torch.where(rr > 0, rr, torch.ones_like(rr)), torch.zeros_like(rr)
        )
        p = r + _col(beta, x) * p
        rr = rr_new
    return x
