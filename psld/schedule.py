"""Noise schedules and the DDIM update, with diffusers' ``DDIMScheduler`` conventions.

``alphas_cumprod`` has diffusers semantics: ``alphas_cumprod[t] = prod_{s<=t} (1 - beta_s)`` for the
0-based training timestep ``t``. The DDIM update from timestep ``t`` to the previous one ``t'``:

    z0   = (z_t - sqrt(1 - a_t) eps) / sqrt(a_t)
    s    = eta * sqrt((1 - a_p)/(1 - a_t)) * sqrt(1 - a_t/a_p)
    z_t' = sqrt(a_p) z0 + sqrt(1 - a_p - s^2) eps + s * noise

with ``a_t = alphas_cumprod[t]`` and ``a_p = alphas_cumprod[t']``, or the "final" alpha (1, or
``alphas_cumprod[0]`` when ``set_alpha_to_one=False``) after the last step. With every training step
(``num_steps == T``) and ``eta = 1`` this is exactly ancestral DDPM sampling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def linear_betas(num_train_timesteps: int = 1000, beta_start: float = 1e-4, beta_end: float = 2e-2) -> Tensor:
    """Linear betas (DDPM), float64."""
    return torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)


def scaled_linear_betas(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> Tensor:
    """Betas linear in sqrt(beta) (Stable Diffusion / LDM, diffusers' ``scaled_linear``), float64."""
    return torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2


def alphas_cumprod_from_betas(betas: Tensor) -> Tensor:
    """``abar_t = prod_{s<=t} (1 - beta_s)``."""
    betas = torch.as_tensor(betas, dtype=torch.float64)
    if betas.dim() != 1 or betas.numel() == 0:
        raise ValueError(f"betas must be a non-empty 1-D tensor, got shape {list(betas.shape)}")
    if bool(((betas <= 0) | (betas >= 1)).any()):
        raise ValueError("betas must lie in (0, 1)")
    return torch.cumprod(1.0 - betas, dim=0)


def make_alphas_cumprod(kind: str = "linear", num_train_timesteps: int = 1000, **kw) -> Tensor:
    """``alphas_cumprod`` for a named schedule: ``"linear"`` (1e-4..2e-2) or ``"scaled_linear"`` (SD)."""
    if kind == "linear":
        return alphas_cumprod_from_betas(linear_betas(num_train_timesteps, **kw))
    if kind == "scaled_linear":
        return alphas_cumprod_from_betas(scaled_linear_betas(num_train_timesteps, **kw))
    raise ValueError(f"schedule kind must be 'linear' or 'scaled_linear', got {kind!r}")


@dataclass(frozen=True)
class DDIMSchedule:
    """The timesteps and ``abar`` pairs of a DDIM run (diffusers ``DDIMScheduler.set_timesteps``).

    ``timesteps[i]`` is the model's timestep at step ``i``; ``alpha[i]``/``alpha_prev[i]`` are ``abar``
    at that step and at the step it moves to.
    """

    timesteps: Tensor  # long, [S], descending
    alpha: Tensor  # float64, [S]
    alpha_prev: Tensor  # float64, [S]

    @classmethod
    def create(
        cls,
        alphas_cumprod: Tensor,
        num_steps: int,
        *,
        timestep_spacing: str = "leading",
        steps_offset: int = 0,
        set_alpha_to_one: bool = True,
    ) -> DDIMSchedule:
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
        T = ac.numel()
        if not isinstance(num_steps, int) or not 1 <= num_steps <= T:
            raise ValueError(f"num_steps must be an int in [1, {T}], got {num_steps!r}")
        if timestep_spacing == "leading":
            ratio = T // num_steps
            ts = torch.arange(num_steps, dtype=torch.long).flip(0) * ratio + steps_offset
        elif timestep_spacing == "trailing":
            ratio = T / num_steps
            ts = torch.arange(T, 0, -ratio, dtype=torch.float64).round().long() - 1
        elif timestep_spacing == "linspace":
            ts = torch.linspace(0, T - 1, num_steps, dtype=torch.float64).round().long().flip(0)
        else:
            raise ValueError(
                f"timestep_spacing must be 'leading', 'trailing' or 'linspace', got {timestep_spacing!r}"
            )
        if int(ts.max()) >= T or int(ts.min()) < 0:
            raise ValueError(f"steps_offset={steps_offset} puts timesteps outside [0, {T - 1}]")
        # diffusers: prev_timestep = t - T // num_steps, whatever the spacing
        prev = ts - T // num_steps
        final = torch.tensor(1.0, dtype=torch.float64) if set_alpha_to_one else ac[0]
        alpha = ac[ts]
        alpha_prev = torch.where(prev >= 0, ac[prev.clamp_min(0)], final)
        return cls(ts, alpha, alpha_prev)

    def __len__(self) -> int:
        return self.timesteps.numel()


def predict_z0(z_t: Tensor, eps: Tensor, alpha: float) -> Tensor:
    """Tweedie/DDIM estimate ``z0 = (z_t - sqrt(1 - a) eps)/sqrt(a)``."""
    return (z_t - (1.0 - alpha) ** 0.5 * eps) / alpha**0.5


def ddim_sigma(alpha: float, alpha_prev: float, eta: float) -> float:
    """DDIM noise scale ``eta * sqrt((1 - a_p)/(1 - a_t) * (1 - a_t/a_p))``."""
    if eta == 0.0:
        return 0.0
    var = (1.0 - alpha_prev) / (1.0 - alpha) * (1.0 - alpha / alpha_prev)
    return eta * max(var, 0.0) ** 0.5


def ddim_step(z0: Tensor, eps: Tensor, alpha_prev: float, sigma: float, noise: Tensor | None) -> Tensor:
    """``sqrt(a_p) z0 + sqrt(1 - a_p - s^2) eps + s * noise`` (no clipping, as in the official code)."""
    out = alpha_prev**0.5 * z0 + max(1.0 - alpha_prev - sigma**2, 0.0) ** 0.5 * eps
    if sigma > 0.0:
        if noise is None:
            raise ValueError("noise is required when sigma > 0")
        out = out + sigma * noise
    return out


def official_ddim_schedule(alphas_cumprod: Tensor, num_steps: int) -> tuple[DDIMSchedule, Tensor]:
    """The DDIM schedule of the official PSLD code for any step count, and the timesteps its model sees.

    The official rule (CompVis ``make_ddim_timesteps`` "uniform" plus PSLD's patched
    ``make_ddim_sampling_parameters``), with ``T = len(alphas_cumprod)`` and ``S = num_steps``::

        c      = T // S
        seen   = range(0, T, c) + 1                  the model's timesteps: ceil(T / c) steps, not S
        index  = seen - 1  if seen[-1] == len(seen)  else seen       (the patch: only c = 1 or c = T)
        alpha  = abar[index],   alpha_prev = [abar[0]] + abar[index[:-1]]

    run from the largest timestep down. So at ``T = 1000``: ``S = 30`` runs 31 steps from ``t = 991``;
    every ``S`` in 501..1000 runs 1000 steps with the model at ``t + 1``; ``S = 1`` is one step at
    ``abar[0]``. Where ``index`` reaches ``T`` (``c`` divides ``T - 1``, e.g. ``S = 300``) the official code
    fails with an index error, and so does this function (``ValueError``), as it does for ``S > T``.

    Returns ``(schedule, seen)``: ``schedule.timesteps`` are the ``abar`` indices (descending) and
    ``seen`` ``[len(schedule)]`` the model's timesteps.
    """
    ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
    T = ac.numel()
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 1 <= num_steps <= T:
        raise ValueError(
            f"num_steps must be an int in [1, {T}] for the official schedule (the official code has "
            f"c = {T} // num_steps = 0 beyond), got {num_steps!r}"
        )
    c = T // num_steps
    seen = torch.arange(0, T, c, dtype=torch.long) + 1
    index = seen - 1 if int(seen[-1]) == seen.numel() else seen
    if int(index[-1]) >= T:
        raise ValueError(
            f"num_steps={num_steps} crashes the official code: c = {T} // {num_steps} = {c} divides "
            f"{T - 1}, so its last DDIM index is {int(index[-1])}, outside alphas_cumprod[0..{T - 1}]"
        )
    alpha = ac[index]
    alpha_prev = torch.cat([ac[:1], ac[index[:-1]]])
    return DDIMSchedule(index.flip(0), alpha.flip(0), alpha_prev.flip(0)), seen.flip(0)
