"""The one sampler core: a DDIM step followed by a guidance step on the latent.

For each timestep ``t`` (``a = abar_t``, ``a' = abar_prev``)::

    eps     = prior.eps(z_t, t)
    z0_hat  = (z_t - sqrt(1 - a) eps) / sqrt(a)                         Tweedie / DDIM estimate
    z'      = sqrt(a') z0_hat + sqrt(1 - a' - s^2) eps + s xi           unconditional DDIM step
    x0_hat  = D(z0_hat)
    meas    = L(y, A x0_hat [+ noise])                                  measurement term
    glue    = L(z0_hat, E(A^T y + (I - A^T A) x0_hat))                  psld gluing term
    z_{t-1} = z' - grad_{z_t} (omega * meas + gamma * glue)

with ``L`` the per-sample norm or squared norm. DPS, latent DPS and GML-DPS are configurations
(:class:`psld.config.PSLDConfig`); the later latent solvers (:mod:`psld.methods`) add hooks at the fixed
points listed in :mod:`psld.hooks`, and latent DAPS runs its own loop through the same entry point.
Losses are per sample and summed over the batch, so a batch of B problems gives the B single-problem
results (given one generator per sample).

Divergence: after the last step (one host sync, none per step) :func:`sample` raises
:class:`DivergenceError` when a latent or a loss became NaN/inf, and warns with
:class:`DivergenceWarning` when the final latents left the prior's scale (rule: some sample's latent
rms ``sqrt(mean(z^2))`` exceeds ``DRIFT_RMS = 100`` times the unit scale of the ``N(0, I)`` prior).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from psld.config import PSLDConfig
from psld.hooks import LoopResult, MethodConfig, Step
from psld.operators.base import LinearOperator
from psld.protocols import Decoder, Encoder, Identity, LatentPrior
from psld.random import randn_like_batch
from psld.schedule import DDIMSchedule, ddim_sigma, ddim_step, official_ddim_schedule, predict_z0
from psld.warn import once_per_run

#: final latent rms (per sample) above which :func:`sample` warns: 100 prior standard deviations.
DRIFT_RMS = 100.0

Generator = torch.Generator | list[torch.Generator] | None
Callback = Callable[[int, int, dict], dict | None]


@dataclass
class SampleOutput:
    """Result of :func:`sample`.

    ``x``: decoded final sample ``D(z)``; ``z``: final latent; ``losses``: per-step, per-sample
    ``"measurement"`` and ``"glue"`` values, each ``[len(timesteps), B]`` (``num_steps`` rows except for
    the official spacing; the glue row is zero when the method has no gluing term; the measurement
    row is ``L(y, A D(z0_hat))`` also when ``omega = 0``: an unguided run measures without guiding);
    ``timesteps``: the schedule's timesteps (``abar`` indices) that were visited; the prior
    saw :func:`schedule_for`'s timesteps plus ``config.model_t_offset``.
    """

    x: Tensor
    z: Tensor
    losses: dict[str, Tensor] = field(default_factory=dict)
    timesteps: Tensor | None = None


class DivergenceError(RuntimeError):
    """Sampling produced non-finite latents or losses (the guidance weights are too large)."""


class DivergenceWarning(RuntimeWarning):
    """The final latents are far outside the prior's scale (rms > :data:`DRIFT_RMS`)."""


def _per_sample(r: Tensor, loss: str) -> Tensor:
    """``||r||^2`` or ``||r||`` per sample; the norm has gradient 0 (not NaN) at ``r = 0``."""
    sq = r.flatten(1).pow(2).sum(1)
    if loss == "squared":
        return sq
    positive = sq > 0
    return torch.where(positive, torch.where(positive, sq, torch.ones_like(sq)).sqrt(), torch.zeros_like(sq))


def _check_divergence(config: PSLDConfig, bad: Tensor, z: Tensor, timesteps: Tensor) -> None:
    """Raise :class:`DivergenceError` naming the first bad step, or warn on latent drift (one sync)."""
    rms = z.detach().flatten(1).float().pow(2).mean(1).sqrt()
    summary = torch.stack([bad.any().float(), rms.max() if rms.numel() else rms.new_zeros(())]).cpu()
    knobs = config.KNOBS if isinstance(config, MethodConfig) else ("omega", "gamma")
    advice = config.ADVICE if isinstance(config, MethodConfig) else "lower omega/gamma"
    shown = ", ".join(f"{k}={getattr(config, k):g}" for k in knobs)
    weights = f"method={config.method!r}, {shown}, loss={config.loss!r}"
    if summary[0] > 0:
        i = int(bad.float().argmax())
        raise DivergenceError(
            f"sampling diverged: non-finite latents or losses first at step {i} of {bad.numel()} "
            f"(t={int(timesteps[i])}) with {weights}; {advice}"
        )
    if not float(summary[1]) <= DRIFT_RMS:
        import warnings

        warnings.warn(
            f"final latent rms {float(summary[1]):.3g} is far outside the prior's scale "
            f"(> {DRIFT_RMS:g}) with {weights}; the result is likely meaningless, {advice}",
            DivergenceWarning,
            stacklevel=3,
        )


def _glue_operator(operator: LinearOperator, glue: str) -> tuple[LinearOperator, str]:
    if glue == "official":
        from psld.operators.official import OfficialTranspose

        return OfficialTranspose(operator), "adjoint"
    return operator, glue


def _encode(encoder: Encoder, x: Tensor, mode: str, generator: Generator) -> Tensor:
    sampler = getattr(encoder, "sample", None)
    if mode == "sample" and sampler is not None:
        return sampler(x, generator)
    return encoder(x)  # deterministic encoders have a degenerate posterior: mode == sample


def guidance(
    z: Tensor,
    z0: Tensor,
    encoder: Encoder,
    decoder: Decoder,
    operator: LinearOperator,
    y: Tensor,
    config: PSLDConfig,
    generator: Generator = None,
    glue_op: LinearOperator | None = None,
    glue_mode: str | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Gradient of ``omega * meas + gamma * glue`` w.r.t. ``z`` (the leaf that ``z0`` depends on).

    Returns ``(grad, meas, glue, x0)`` with per-sample losses ``[B]`` (detached) and the decoded
    ``x0_hat`` (detached). This is the guidance map of the core, exposed so that fixed-point analyses
    (``verification``) iterate the very code the sampler runs.
    """
    if glue_op is None and config.uses_glue:
        glue_op, glue_mode = _glue_operator(operator, config.glue)
    x0 = decoder(z0)
    if tuple(x0.shape[1:]) != operator.in_shape:
        raise ValueError(
            f"decoder output shape {list(x0.shape[1:])} does not match operator.in_shape "
            f"{list(operator.in_shape)}"
        )
    pred = operator.forward(x0)
    if config.noisy_prediction and config.prediction_sigma > 0:
        pred = pred + config.prediction_sigma * randn_like_batch(
            pred.shape, generator, pred.device, pred.dtype
        )
    meas = _per_sample(y - pred, config.loss)
    total = config.omega * meas.sum()
    glue = torch.zeros_like(meas)
    if config.uses_glue:
        assert glue_op is not None and glue_mode is not None  # set above whenever the glue is used
        target_x = glue_op.glue(x0, y, glue_mode) if config.method == "psld" else x0
        target = _encode(encoder, target_x, config.encode, generator)
        if target.shape != z0.shape:
            raise ValueError(
                f"encoder output shape {list(target.shape[1:])} does not match the latent shape "
                f"{list(z0.shape[1:])}"
            )
        glue = _per_sample(z0 - target, config.loss)
        total = total + config.gamma * glue.sum()
    (grad,) = torch.autograd.grad(total, z)
    return grad, meas.detach(), glue.detach(), x0.detach()


def _check_inputs(operator, y, config, generator, latents) -> int:
    if not isinstance(config, PSLDConfig):
        raise ValueError(f"config must be a PSLDConfig, got {type(config).__name__}")
    if not isinstance(operator, LinearOperator):
        raise ValueError(f"operator must be a psld LinearOperator, got {type(operator).__name__}")
    operator.check_output(y, "y")
    batch = y.shape[0]
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"generator list has {len(generator)} entries but the batch size is {batch}")
    if latents is not None and (not isinstance(latents, Tensor) or latents.shape[0] != batch):
        raise ValueError(f"latents must be a tensor with batch size {batch} (the batch of y)")
    return batch


def _latent_shape(encoder: Encoder, operator: LinearOperator, y: Tensor, latent_shape) -> tuple[int, ...]:
    if latent_shape is not None:
        return tuple(int(s) for s in latent_shape)
    with torch.no_grad():  # infer from the encoder: one encode of A^T y
        return tuple(encoder(operator.adjoint(y)).shape[1:])


def schedule_for(config: PSLDConfig, alphas_cumprod: Tensor) -> tuple[DDIMSchedule, Tensor]:
    """The DDIM schedule of ``config`` and the timesteps the prior sees (before ``model_t_offset``).

    diffusers spacings (:meth:`DDIMSchedule.create`): the prior sees ``schedule.timesteps``; the
    ``"official"`` spacing: :func:`psld.schedule.official_ddim_schedule`.
    """
    if config.timestep_spacing == "official":
        return official_ddim_schedule(alphas_cumprod, config.num_steps)
    sched = DDIMSchedule.create(
        alphas_cumprod,
        config.num_steps,
        timestep_spacing=config.timestep_spacing,
        steps_offset=config.steps_offset,
        set_alpha_to_one=config.set_alpha_to_one,
    )
    return sched, sched.timesteps


@once_per_run  # a PinvNotConvergedWarning (glue="pinv") is shown once per run, at the caller
def sample(
    prior: LatentPrior,
    encoder: Encoder | None,
    decoder: Decoder | None,
    operator: LinearOperator,
    y: Tensor,
    *,
    config: PSLDConfig | None = None,
    generator: Generator = None,
    latents: Tensor | None = None,
    latent_shape: tuple[int, ...] | None = None,
    callback: Callback | None = None,
    progress: bool = False,
) -> SampleOutput:
    """Run the guided reverse diffusion and return the restored sample.

    ``y`` is ``[B, *operator.out_shape]``; latents start from ``latents`` or ``N(0, I)`` drawn from
    ``generator`` (one, or a list of B, diffusers style) with shape ``latent_shape`` (inferred from
    ``encoder(A^T y)`` when omitted). ``callback(i, t, state)`` runs after each step with ``state``
    holding ``latents``, ``z0`` and ``x0``; a returned dict with ``"latents"`` replaces them.
    ``method="dps"`` uses the identity encoder/decoder (``encoder``/``decoder`` may be ``None``).
    Raises :class:`DivergenceError` for non-finite latents or losses, warns :class:`DivergenceWarning`
    for final latents beyond :data:`DRIFT_RMS` (see the module docstring).
    """
    config = PSLDConfig() if config is None else config
    batch = _check_inputs(operator, y, config, generator, latents)
    if config.method == "dps":
        encoder = decoder = Identity()
    elif encoder is None or decoder is None:
        raise ValueError(f"method {config.method!r} needs an encoder and a decoder")
    dtype = y.dtype if y.is_floating_point() else torch.float32
    if latents is None:
        shape = (batch, *_latent_shape(encoder, operator, y, latent_shape))
        z = randn_like_batch(shape, generator, y.device, dtype)
    else:
        z = latents.to(device=y.device, dtype=dtype)
    hooks = config if isinstance(config, MethodConfig) else None
    if hooks is not None and hooks.own_loop:
        out = hooks.run(prior, encoder, decoder, operator, y, z, generator, callback, progress)
    else:
        out = _ddim_loop(
            prior, encoder, decoder, operator, y, z, config, hooks, generator, callback, progress
        )
    _check_divergence(config, out.nonfinite, out.z, out.timesteps)
    with torch.no_grad():
        x = decoder(out.z)
    return SampleOutput(
        x=x, z=out.z, losses={"measurement": out.meas, "glue": out.glue}, timesteps=out.timesteps
    )


def progress_bar(steps: range, config: PSLDConfig, progress: bool):
    """``steps`` wrapped in a tqdm bar named for the method when ``progress``."""
    if not progress:
        return steps
    from tqdm.auto import tqdm

    return tqdm(steps, desc=f"{config.method} sampling", leave=False)


def apply_callback(callback: Callback | None, i: int, t: int, state: dict, z: Tensor) -> Tensor:
    """``z`` after ``callback(i, t, state)`` (``state["latents"]`` is ``z``): its ``"latents"`` replace
    ``z`` when it returns them (diffusers' ``callback_on_step_end`` contract)."""
    if callback is None:
        return z
    update = callback(i, t, state)
    return update["latents"] if update and "latents" in update else z


def _ddim_loop(
    prior: LatentPrior,
    encoder: Encoder,
    decoder: Decoder,
    operator: LinearOperator,
    y: Tensor,
    z: Tensor,
    config: PSLDConfig,
    hooks: MethodConfig | None,
    generator: Generator,
    callback: Callback | None,
    progress: bool,
) -> LoopResult:
    """The DDIM loop of the module docstring, with a method's hooks at the points of :mod:`psld.hooks`."""
    batch = y.shape[0]
    sched, seen = schedule_for(config, prior.alphas_cumprod)
    glue_op, glue_mode = _glue_operator(operator, config.glue) if config.uses_glue else (operator, None)
    meas_log = torch.zeros(len(sched), batch, device=y.device)
    glue_log = torch.zeros_like(meas_log)
    nonfinite = torch.zeros(len(sched), dtype=torch.bool, device=y.device)  # per step, no host sync
    grad_zt = config.guided and config.grad_wrt == "zt"

    def hook_step(i: int) -> Step:
        a, a_prev = float(sched.alpha[i]), float(sched.alpha_prev[i])
        t_model = int(seen[i]) + config.model_t_offset
        T = len(prior.alphas_cumprod)
        return Step(i, t_model, a, a_prev, prior, encoder, decoder, operator, y, generator, len(sched), T)

    if hooks is not None:
        z = hooks.initial_latents(hook_step(0), z)
    for i in progress_bar(range(len(sched)), config, progress):
        t = int(sched.timesteps[i])
        a, a_prev = float(sched.alpha[i]), float(sched.alpha_prev[i])
        step = hook_step(i)  # what the hooks see (a small record; built for every step, used by hooks)
        if hooks is not None:
            z = hooks.refine_latent(step, z)
        with torch.set_grad_enabled(grad_zt):
            z_in = z.detach().requires_grad_(grad_zt)
            eps = prior.eps(z_in, int(seen[i]) + config.model_t_offset)
            z0 = predict_z0(z_in, eps, a)
        if hooks is not None:
            z0, eps = hooks.update_z0(step, z_in.detach(), z0, eps)
        sigma = ddim_sigma(a, a_prev, config.eta) if hooks is None else hooks.step_sigma(a, a_prev)
        noise = randn_like_batch(z.shape, generator, z.device, z.dtype) if sigma > 0 else None
        z_next = ddim_step(z0.detach(), eps.detach(), a_prev, sigma, noise)
        x0 = None
        if config.guided:
            with torch.enable_grad():
                if config.grad_wrt == "z0":
                    z_in = z0 = z0.detach().requires_grad_(True)
                grad, meas, glue, x0 = guidance(
                    z_in, z0, encoder, decoder, operator, y, config, generator, glue_op, glue_mode
                )
            z_next = z_next - (grad if hooks is None else hooks.guidance_scale(step) * grad)
            meas_log[i], glue_log[i] = meas, glue
        elif hooks is None:  # unguided (omega = 0, no glue): still log what was measured, ||y - A D(z0_hat)||
            with torch.no_grad():
                x0 = decoder(z0.detach())
                meas_log[i] = _per_sample(y - operator.forward(x0), config.loss)
        if hooks is not None:
            z_next = hooks.consistency(step, z_next, z0.detach())
            if step.meas is not None:
                meas_log[i] = step.meas
        z = z_next.detach()
        z = apply_callback(callback, i, t, {"latents": z, "z0": z0.detach(), "x0": x0}, z)
        nonfinite[i] = ~torch.isfinite(z).all()
    if config.guided:  # a loss that guided nothing (logged only) cannot make the run diverge
        nonfinite |= ~(torch.isfinite(meas_log).all(1) & torch.isfinite(glue_log).all(1))
    return LoopResult(z=z, meas=meas_log, glue=glue_log, nonfinite=nonfinite, timesteps=sched.timesteps)
