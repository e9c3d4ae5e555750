"""STSL (Rout et al., CVPR 2024): a second-order Tweedie surrogate minimised on ``z_t`` before each step.

Second-order Tweedie gives the posterior covariance of the latent (``a = abar_t``, ``J`` the Jacobian
of the prior's ``eps`` at ``z_t``, ``k`` the latent size)::

    Cov[z0 | z_t] = (1 - a) / a * (I - sqrt(1 - a) J),   tr Cov = (1 - a) / a * (k - sqrt(1 - a) tr J)

``tr J`` is Hutchinson's estimate ``mean_m v_m^T J v_m`` over Rademacher probes ``v_m``, with ``J v``
taken by a forward difference ``(eps(z + delta v) - eps(z)) / delta`` (first-order autograd only). Each
step runs ``inner_steps`` updates::

    z_t <- z_t - grad_{z_t} (omega * L(y, A D(z0_hat(z_t))) + gamma * tr Cov[z0 | z_t])

then the DDIM step. The chain starts from the encoded measurement,
``z_T = sqrt(a_T) E(A^T y) + sqrt(1 - a_T) xi``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from psld.config import check_fields
from psld.hooks import MethodConfig, Step
from psld.methods.common import measurement_loss
from psld.random import randn_like_batch
from psld.schedule import predict_z0


def hutchinson_trace(matvec: Callable[[Tensor], Tensor], probes: Tensor) -> Tensor:
    """Per-sample ``mean_m v_m^T M v_m`` for probes ``[m, B, *shape]``; unbiased for ``tr M``
    when ``E[v v^T] = I`` (Rademacher or Gaussian probes)."""
    return torch.stack([(v * matvec(v)).flatten(1).sum(1) for v in probes]).mean(0)


def rademacher(shape: tuple[int, ...], generator, device, dtype) -> Tensor:
    """Entries +-1 with probability 1/2 each, drawn per row from ``generator`` (one or a list)."""
    return torch.sign(randn_like_batch(shape, generator, device, dtype))


@dataclass(frozen=True)
class STSLConfig(MethodConfig):
    """STSL: ``omega`` steps on the measurement loss, ``gamma`` weighs the covariance trace."""

    NAME: ClassVar[str] = "stsl"
    KNOBS: ClassVar[tuple[str, ...]] = ("omega", "gamma")
    ADVICE: ClassVar[str] = "lower omega/gamma"
    method: str = "stsl"
    num_steps: int = 50
    omega: float = 1.0
    gamma: float = 0.01
    inner_steps: int = 2
    probes: int = 1
    fd_delta: float = 1e-3
    init_from_measurement: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, "positive int", "inner_steps", "probes")
        check_fields(self, "finite positive number", "fd_delta")

    def trace_cov(self, step: Step, z: Tensor, probes: Tensor, eps: Tensor | None = None) -> Tensor:
        """Per-sample ``(1 - a) / a * (k - sqrt(1 - a) tr J)`` with Hutchinson's ``tr J`` (differentiable).

        ``eps``: the prior's prediction at ``z`` when already computed (saves one prior call).
        """
        a = step.a
        eps = step.prior.eps(z, step.t) if eps is None else eps
        jv = lambda v: (step.prior.eps(z + self.fd_delta * v, step.t) - eps) / self.fd_delta  # noqa: E731
        k = z[0].numel()
        return (1 - a) / a * (k - math.sqrt(1 - a) * hutchinson_trace(jv, probes))

    def surrogate(self, step: Step, z: Tensor, probes: Tensor) -> tuple[Tensor, Tensor]:
        """``(omega * L + gamma * tr Cov, L)`` per sample at ``z_t = z``."""
        eps = step.prior.eps(z, step.t)
        z0 = predict_z0(z, eps, step.a)
        meas = measurement_loss(step.decoder, step.operator, step.y, z0, self.loss)
        total = self.omega * meas
        if self.gamma > 0:
            total = total + self.gamma * self.trace_cov(step, z, probes, eps)
        return total, meas.detach()

    def initial_latents(self, step: Step, z: Tensor) -> Tensor:
        if not self.init_from_measurement:
            return z
        with torch.no_grad():
            z_y = step.encoder(step.operator.adjoint(step.y))
        return math.sqrt(step.a) * z_y + math.sqrt(1 - step.a) * z

    def refine_latent(self, step: Step, z: Tensor) -> Tensor:
        for _ in range(self.inner_steps):
            probes = torch.stack(
                [rademacher(tuple(z.shape), step.generator, z.device, z.dtype) for _ in range(self.probes)]
            )
            with torch.enable_grad():
                leaf = z.detach().requires_grad_(True)
                total, step.meas = self.surrogate(step, leaf, probes)
                (grad,) = torch.autograd.grad(total.sum(), leaf)
            z = (z - grad).detach()
        return z
