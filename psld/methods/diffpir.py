"""Latent DiffPIR (Zhu et al., CVPR-W 2023) through the autoencoder: a proximal data step on ``D(z0_hat)``.

At each step (``a = abar_t``, ``a' = abar_prev``, ``sigma_t^2 = (1 - a) / a``)::

    rho     = lam * sigma_n^2 / sigma_t^2
    x       = argmin_x ||y - A x||^2 + rho ||x - D(z0_hat)||^2      (closed form if A A^T = I, else CG)
    z0_hat  = E(x)                                                   re-encode
    eps     = (z_t - sqrt(a) z0_hat) / sqrt(1 - a)                    re-derived noise
    z_{t-1} = sqrt(a') z0_hat + sqrt(1 - a') (sqrt(1 - zeta) eps + sqrt(zeta) xi)

The last line is the DDIM step with ``s^2 = zeta (1 - a')``. ``sigma_n`` is the measurement noise std in
the core's [-1, 1] units (``psld.solve`` sets it from ``sigma_y`` unless given).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from psld.config import check_fields
from psld.hooks import MethodConfig, Step
from psld.methods.common import measurement_loss, prox_data
from psld.sampler import _encode


@dataclass(frozen=True)
class DiffPIRConfig(MethodConfig):
    """Latent DiffPIR: ``lam`` weighs the prior in the prox, ``zeta`` the fresh noise."""

    NAME: ClassVar[str] = "diffpir"
    KNOBS: ClassVar[tuple[str, ...]] = ("lam", "zeta")
    ADVICE: ClassVar[str] = "raise lam"
    method: str = "diffpir"
    num_steps: int = 100
    omega: float = 0.0
    #: 0.25 reproduces the official lambda = 1: its rho sets a [0, 1]-unit noise std against the [-1, 1]-unit
    #: sigma_t, here both are in [-1, 1] units (docs/methods.md)
    lam: float = 0.25
    zeta: float = 0.1
    sigma_n: float = 0.02
    cg_iters: int = 30

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, "finite positive number", "lam", "sigma_n")
        if not 0.0 <= self.zeta <= 1.0:
            raise ValueError(f"zeta must lie in [0, 1], got {self.zeta!r}")
        check_fields(self, "positive int", "cg_iters")

    def rho(self, a: float) -> float:
        """``lam * sigma_n^2 / sigma_t^2`` with ``sigma_t^2 = (1 - a) / a``."""
        return self.lam * self.sigma_n**2 * a / (1.0 - a)

    def update_z0(self, step: Step, z: Tensor, z0: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        x0 = step.decoder(z0)
        step.meas = measurement_loss(lambda v: v, step.operator, step.y, x0, self.loss)
        x = prox_data(step.operator, step.y, x0, self.rho(step.a), self.cg_iters)
        z0 = _encode(step.encoder, x, self.encode, step.generator)
        eps = (z - math.sqrt(step.a) * z0) / math.sqrt(1.0 - step.a)
        return z0, eps

    def step_sigma(self, a: float, a_prev: float) -> float:
        return math.sqrt(self.zeta * (1.0 - a_prev))
