"""Latent DAPS (Zhang et al., CVPR 2025): decoupled annealing posterior sampling, its own short loop.

Noise levels ``sigma_0 > ... > sigma_{N-1}`` follow EDM's ``rho = 7`` grid from ``sigma_max`` to
``sigma_min`` (VE scale of the latent, ``sigma_t = sqrt((1 - abar_t) / abar_t)``), each mapped to the prior's
nearest timestep. At level ``i`` (``z_i`` in the prior's VP scale)::

    z0_hat  = ODE(z_i)                  ode_steps deterministic DDIM (probability-flow Euler) steps to t = 0
    z0      ~ Langevin from z0_hat on log p(z0) = -||y - A D(z0)||^2 / tau^2 - ||z0 - z0_hat||^2 / (2 s_i^2)
              (the data gradient clipped elementwise to +-grad_clip first, as the official code does)
              z0 <- z0 + lr_i grad log p(z0) + sqrt(2 lr_i) xi   (langevin_steps times,
              lr_i = lr (1 + i / N (lr_min_ratio - 1)))
    z_{i+1} = sqrt(abar_{i+1}) z0 + sqrt(1 - abar_{i+1}) xi        (fresh noise at the next level)

with ``s_i = sigma_i``; the result is ``D(z0)`` of the last level. The loop shares the prior,
encoder/decoder, operator, generators, callback, progress bar and divergence check with
:func:`psld.sample`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from psld.config import check_fields
from psld.hooks import LoopResult, MethodConfig
from psld.methods.common import measurement_loss, value_and_grad
from psld.operators.base import LinearOperator
from psld.protocols import Decoder, Encoder, LatentPrior
from psld.random import randn_like_batch
from psld.sampler import apply_callback, progress_bar
from psld.schedule import ddim_step, predict_z0


def langevin(grad_log_p: Callable[[Tensor], Tensor], x: Tensor, lr: float, steps: int, generator) -> Tensor:
    """Unadjusted Langevin: ``x <- x + lr grad log p(x) + sqrt(2 lr) xi``, ``steps`` times.

    For a Gaussian target with precision ``P`` and mean ``m`` the chain's stationary law is
    ``N(m, (P - lr P^2 / 2)^{-1})`` (exact for the discrete chain; ``N(m, P^{-1})`` as ``lr -> 0``).
    """
    for _ in range(steps):
        noise = randn_like_batch(x.shape, generator, x.device, x.dtype)
        x = (x + lr * grad_log_p(x) + math.sqrt(2.0 * lr) * noise).detach()
    return x


@dataclass(frozen=True)
class DAPSConfig(MethodConfig):
    """Latent DAPS with Langevin dynamics (``num_steps`` annealing levels)."""

    NAME: ClassVar[str] = "daps"
    KNOBS: ClassVar[tuple[str, ...]] = ("lr", "tau")
    ADVICE: ClassVar[str] = "lower lr or raise tau"
    own_loop: ClassVar[bool] = True
    method: str = "daps"
    num_steps: int = 50
    omega: float = 0.0
    sigma_max: float = 10.0
    sigma_min: float = 0.1
    rho: float = 7.0
    ode_steps: int = 2
    langevin_steps: int = 100
    lr: float = 1e-4
    lr_min_ratio: float = 0.01
    tau: float = 0.01
    #: clip the data gradient elementwise to [-grad_clip, grad_clip] before dividing by tau^2 (official: 1;
    #: 0 turns it off)
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_fields(self, "positive int", "ode_steps", "langevin_steps")
        check_fields(self, "finite number >= 0", "grad_clip")
        check_fields(
            self, "finite positive number", "sigma_max", "sigma_min", "rho", "lr", "lr_min_ratio", "tau"
        )
        if not self.sigma_min < self.sigma_max:
            raise ValueError(f"need sigma_min < sigma_max, got {self.sigma_min!r}, {self.sigma_max!r}")

    def levels(self, alphas_cumprod: Tensor) -> Tensor:
        """The prior's timesteps nearest to the EDM grid of ``num_steps`` sigmas (non-increasing)."""
        n, r = self.num_steps, self.rho
        i = torch.arange(n, dtype=torch.float64) / max(n - 1, 1)
        sig = (self.sigma_max ** (1 / r) + i * (self.sigma_min ** (1 / r) - self.sigma_max ** (1 / r))) ** r
        ac = alphas_cumprod.detach().double().cpu()
        sig_t = ((1 - ac) / ac).sqrt()
        return (sig_t[None, :] - sig[:, None]).abs().argmin(1)

    def ode(self, prior: LatentPrior, z: Tensor, t: int, alphas_cumprod: Tensor) -> Tensor:
        """``z0_hat`` after ``ode_steps`` deterministic DDIM steps from timestep ``t`` to clean."""
        grid = torch.linspace(t, 0, self.ode_steps + 1).round().long().tolist()
        with torch.no_grad():
            for k in range(self.ode_steps):
                a = float(alphas_cumprod[grid[k]])
                eps = prior.eps(z, grid[k] + self.model_t_offset)
                z0 = predict_z0(z, eps, a)
                a_next = float(alphas_cumprod[grid[k + 1]]) if k + 1 < self.ode_steps else 1.0
                z = ddim_step(z0, eps, a_next, 0.0, None)
        return z

    def grad_log_p(self, decoder: Decoder, operator: LinearOperator, y: Tensor, z0_hat: Tensor, r: float):
        """``x -> grad log p`` of the Langevin target at level std ``r``."""

        def grad(x: Tensor) -> Tensor:
            fn = lambda v: measurement_loss(decoder, operator, y, v, "squared")  # noqa: E731
            g = value_and_grad(fn, x)[1]
            if self.grad_clip > 0:
                g = g.clamp(-self.grad_clip, self.grad_clip)
            return -g / self.tau**2 - (x - z0_hat) / r**2

        return grad

    def run(
        self,
        prior: LatentPrior,
        encoder: Encoder,
        decoder: Decoder,
        operator: LinearOperator,
        y: Tensor,
        z: Tensor,
        generator,
        callback,
        progress: bool,
    ) -> LoopResult:
        ac = prior.alphas_cumprod
        ts = self.levels(ac)
        n = len(ts)
        meas_log = torch.zeros(n, y.shape[0], device=y.device)
        nonfinite = torch.zeros(n, dtype=torch.bool, device=y.device)
        for i in progress_bar(range(n), self, progress):
            t = int(ts[i])
            a = float(ac[t])
            r = math.sqrt((1 - a) / a)
            z0_hat = self.ode(prior, z, t, ac)
            lr = self.lr * (1 + i / n * (self.lr_min_ratio - 1))
            z0 = langevin(
                self.grad_log_p(decoder, operator, y, z0_hat, r), z0_hat, lr, self.langevin_steps, generator
            )
            with torch.no_grad():
                meas_log[i] = measurement_loss(decoder, operator, y, z0, self.loss)
            if i + 1 < n:
                a_next = float(ac[int(ts[i + 1])])
                noise = randn_like_batch(z0.shape, generator, z0.device, z0.dtype)
                z = math.sqrt(a_next) * z0 + math.sqrt(1 - a_next) * noise
            else:
                z = z0
            z = apply_callback(callback, i, t, {"latents": z, "z0": z0, "x0": None}, z)
            nonfinite[i] = ~torch.isfinite(z).all()
        nonfinite |= ~torch.isfinite(meas_log).all(1)
        return LoopResult(
            z=z, meas=meas_log, glue=torch.zeros_like(meas_log), nonfinite=nonfinite, timesteps=ts
        )
