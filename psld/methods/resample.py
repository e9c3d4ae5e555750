"""ReSample (Song et al., ICLR 2024): a DPS step, then hard data consistency and stochastic resampling.

Step ``i`` of ``N`` (``index = N - 1 - i``; ``a = abar_t``, ``a' = abar_prev``)::

    z'      = DDIM step from z_t - omega * a * grad_{z_t} L(y, A D(z0_hat(z_t)))   (the core's DPS step)
    on index % every == 0, 0 < index <= N - N // splits:
        z0~  = E(argmin_x ||y - A x||^2 from D(z0_hat))     pixel space, index >= N // splits (Adam)
        z0~  = argmin_z ||y - A D(z)||^2 from z0_hat          latent space, index <  N // splits (Adam)
        (Adam with the official caps, learning rates and per-sample early stopping: tol, patience)
        s^2  = gamma_resample (1 - a') / (1 - a) (1 - a / a')
        z_{t-1} ~ N(mu, v I),  v = s^2 (1 - a') / (s^2 + 1 - a'),
                                mu = (s^2 sqrt(a') z0~ + (1 - a') z') / (s^2 + 1 - a')
    after the last step: latent_iters more latent-space Adam steps on z_0

``N(mu, v)`` is the product ``N(z; sqrt(a') z0~, (1 - a') I) N(z; z', s^2 I)`` (forward process around the
consistent latent, times ``z'`` as a noisy observation of ``z``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from psld.config import check_fields
from psld.hooks import MethodConfig, Step
from psld.methods.common import adam, measurement_loss
from psld.random import randn_like_batch
from psld.sampler import _encode


def resample_moments(z0: Tensor, z_prime: Tensor, a_prev: float, var_s: float) -> tuple[Tensor, float]:
    """Mean ``mu`` and variance ``v`` of ReSample's stochastic resampling (module docstring)."""
    mean = (var_s * math.sqrt(a_prev) * z0 + (1.0 - a_prev) * z_prime) / (var_s + 1.0 - a_prev)
    return mean, var_s * (1.0 - a_prev) / (var_s + 1.0 - a_prev)


@dataclass(frozen=True)
class ReSampleConfig(MethodConfig):
    """ReSample: ``omega`` scales the DPS step (``omega * abar_t``, official 0.5 * abar_t)."""

    NAME: ClassVar[str] = "resample"
    method: str = "resample"
    num_steps: int = 500
    omega: float = 0.5
    gamma_resample: float = 40.0
    every: int = 10
    splits: int = 3
    #: Adam iterations at most, per stage; a sample stops early once its mean-square residual < tol
    pixel_iters: int = 2000
    pixel_lr: float = 1e-2
    latent_iters: int = 500
    latent_lr: float = 5e-3
    tol: float = 1e-6
    #: latent stage: a sample also stops once its loss exceeds its loss this many iterations earlier
    patience: int = 200

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, "positive int", "every", "splits")
        check_fields(self, "non-negative int", "pixel_iters", "latent_iters", "patience")
        check_fields(self, "finite positive number", "gamma_resample", "pixel_lr", "latent_lr")
        check_fields(self, "finite number >= 0", "tol")

    @property
    def guided(self) -> bool:
        return self.omega > 0

    def guidance_scale(self, step: Step) -> float:
        return step.a

    def stage(self, i: int) -> str | None:
        """``"pixel"``, ``"latent"`` or ``None``: the hard data consistency at step ``i``."""
        n = self.num_steps
        index = n - 1 - i
        if not (0 < index <= n - n // self.splits and index % self.every == 0):
            return None
        return "pixel" if index >= n // self.splits else "latent"

    def latent_fit(self, step: Step, z: Tensor) -> Tensor:
        """``latent_iters`` Adam steps on the per-sample mean of ``(y - A D(z))^2``."""
        size = step.y[0].numel()
        fn = lambda v: measurement_loss(step.decoder, step.operator, step.y, v, "squared") / size  # noqa: E731
        return adam(fn, z, self.latent_iters, self.latent_lr, self.tol, self.patience)[0]

    def consistency(self, step: Step, z_next: Tensor, z0: Tensor) -> Tensor:
        stage = self.stage(step.i)
        if stage is not None:
            if stage == "pixel":
                size = step.y[0].numel()
                fn = lambda x: measurement_loss(lambda v: v, step.operator, step.y, x, "squared") / size  # noqa: E731
                x = adam(fn, step.decoder(z0).detach(), self.pixel_iters, self.pixel_lr, self.tol)[0]
                z0 = _encode(step.encoder, x, self.encode, step.generator).detach()
            else:
                z0 = self.latent_fit(step, z0)
            a, a_prev = step.a, step.a_prev
            var_s = self.gamma_resample * (1 - a_prev) / (1 - a) * (1 - a / a_prev)
            mean, var = resample_moments(z0, z_next, a_prev, var_s)
            z_next = mean + math.sqrt(var) * randn_like_batch(z0.shape, step.generator, z0.device, z0.dtype)
        if step.i == step.num_steps - 1 and self.latent_iters > 0:
            z_next = self.latent_fit(step, z_next)
        return z_next
