"""The guided fixed-point iteration of docs/theory.md T3, driven by the sampler's own guidance map.

At a fixed noise level with Tweedie factor ``c`` (``z0_hat = c z``), one iteration is::

    z <- z - grad_z (omega * L(y, A D(c z)) + gamma * G(c z))

exactly the guidance step of :func:`psld.sampler.guidance` (same losses, same glue, same gradient
code), without the DDIM drift. For linear E, D and squared losses the map is affine and
``e_{n+1} = (I - 2 c^2 (omega M + gamma M^2)) e_n`` with ``e_n = c z_n - w0``.

Per-sample step sizes are supported by calling the guidance map once per term with unit weight and
weighting the two gradients per sample, so a whole grid of steps runs as one batch.
"""

from __future__ import annotations

import torch
from torch import Tensor

from psld.config import PSLDConfig
from psld.operators.base import LinearOperator
from psld.sampler import guidance


def _as_column(v, z: Tensor) -> Tensor:
    v = torch.as_tensor(v, dtype=z.dtype, device=z.device)
    return v.reshape(-1, *([1] * (z.dim() - 1))) if v.dim() else v


def guided_map_gradients(
    z: Tensor,
    encoder,
    decoder,
    operator: LinearOperator,
    y: Tensor,
    *,
    method: str = "psld",
    loss: str = "squared",
    glue: str = "adjoint",
    c: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Per-sample gradients ``(grad meas, grad glue)`` of the core's losses at ``z0_hat = c z``."""
    zz = z.detach().requires_grad_(True)
    meas_cfg = PSLDConfig(method=method, omega=1.0, gamma=0.0, loss=loss, glue=glue)
    g_meas, *_ = guidance(zz, c * zz, encoder, decoder, operator, y, meas_cfg)
    if method in ("psld", "gml"):
        zz = z.detach().requires_grad_(True)
        glue_cfg = PSLDConfig(method=method, omega=0.0, gamma=1.0, loss=loss, glue=glue)
        g_glue, *_ = guidance(zz, c * zz, encoder, decoder, operator, y, glue_cfg)
    else:
        g_glue = torch.zeros_like(g_meas)
    return g_meas, g_glue


def iterate(
    z: Tensor,
    encoder,
    decoder,
    operator: LinearOperator,
    y: Tensor,
    *,
    omega,
    gamma=0.0,
    n: int,
    method: str = "psld",
    loss: str = "squared",
    glue: str = "adjoint",
    c: float = 1.0,
    blowup: float | None = None,
) -> Tensor:
    """Run ``n`` guided iterations; ``omega``/``gamma`` may be scalars or per-sample tensors.

    With ``blowup`` set, samples whose norm exceeds it are frozen (kept at that state) so that a
    divergent step in a batch cannot overflow and poison the others.
    """
    omega, gamma = _as_column(omega, z), _as_column(gamma, z)
    use_glue = bool(torch.as_tensor(gamma).abs().max() > 0) and method in ("psld", "gml")
    for _ in range(n):
        g_meas, g_glue = guided_map_gradients(
            z, encoder, decoder, operator, y, method=method if use_glue else "ldps", loss=loss, glue=glue, c=c
        )
        step = omega * g_meas + (gamma * g_glue if use_glue else 0.0)
        if blowup is not None:
            alive = z.flatten(1).norm(dim=1) <= blowup
            step = step * _as_column(alive.to(z.dtype), z)
        z = (z - step).detach()
    return z
