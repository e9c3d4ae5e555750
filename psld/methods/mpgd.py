"""MPGD (He et al., ICLR 2024): manifold-preserving guidance, a gradient step on ``z0_hat`` itself.

At each DDIM step (``a = abar_t``, ``a' = abar_prev``; no backward pass through the prior)::

    z0_hat <- z0_hat - omega / sqrt(a') * grad_{z0_hat} L(y, A D(z0_hat))
    z0_hat <- E(D(z0_hat))              optional projection, for t / T in (project_start, project_end)
    z_{t-1} = sqrt(a') z0_hat + sqrt(1 - a' - s^2) eps + s xi          (eps of the prior, DDIM eta)

Defaults (docs/methods.md): 100 steps, eta 0.5, unsquared norm (official ``linear_inv`` scripts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from psld.hooks import MethodConfig, Step
from psld.methods.common import measurement_loss, value_and_grad


@dataclass(frozen=True)
class MPGDConfig(MethodConfig):
    """MPGD: ``omega`` is the step on ``z0_hat`` (scaled by ``1 / sqrt(abar_prev)``)."""

    NAME: ClassVar[str] = "mpgd"
    method: str = "mpgd"
    num_steps: int = 100
    eta: float = 0.5
    omega: float = 0.1
    #: apply the autoencoder projection z0_hat <- E(D(z0_hat)) on a window of the trajectory
    project: bool = False
    project_start: float = 0.3
    project_end: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.project_start <= self.project_end <= 1.0:
            raise ValueError(
                "need 0 <= project_start <= project_end <= 1, "
                f"got {self.project_start!r}, {self.project_end!r}"
            )

    def z0_step(self, step: Step, z0: Tensor) -> tuple[Tensor, Tensor]:
        """``z0_hat - omega / sqrt(a') grad L(y, A D(z0_hat))`` and the per-sample loss before the step."""
        meas, grad = value_and_grad(
            lambda z: measurement_loss(step.decoder, step.operator, step.y, z, self.loss), z0
        )
        return (z0.detach() - (self.omega / math.sqrt(step.a_prev)) * grad).detach(), meas

    def update_z0(self, step: Step, z: Tensor, z0: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        z0, step.meas = self.z0_step(step, z0)
        if self.project and self.project_start < step.t / step.num_train < self.project_end:
            z0 = step.encoder(step.decoder(z0)).detach()
        return z0, eps
