"""T12's samplers on a Gaussian-mixture problem (docs/theory.md §10), each through :func:`psld.sample`.

* ``oracle``: the exact noised-posterior score ``grad log p_t(x_t | y)`` as the prior's eps, guidance off,
  so its error is the time-stepping (and ``N(0, I)`` start) error alone;
* ``dps``: the mixture prior in the ambient space, identity encoder/decoder, norm loss weight ``omega``;
* ``ldps`` / ``gml`` / ``psld``: the mixture on ``z``, a linear decoder ``x = S z`` (orthonormal ``S``
  ``[d + 16, d]``), ``A_x = A S^T`` so that ``A_x S = A`` and the posterior of ``z`` is the benchmark's;
* ``flipped`` / ``unguided``: negative cases, the oracle with ``grad log p_t(y | x_t)`` negated or dropped;
* :func:`mcgdiff_dps`: DPS as the MCGdiff authors' ``gmm.py`` runs it (not through the core; see there).

Samples are returned in the mixture's space (``z``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

import linear_model as lm
from linear_model.gmm_benchmark import GMMProblem
from linear_model.mixture import GaussianMixture, GaussianMixtureLatentPrior
from psld.config import PSLDConfig
from psld.operators import MatrixOperator
from psld.sampler import guidance, sample, schedule_for
from psld.schedule import ddim_sigma

F64 = torch.float64
METHODS = ("oracle", "dps", "ldps", "gml", "psld")
NEGATIVES = ("flipped", "unguided")


class _GuidedOraclePrior:
    """eps of ``grad log p_t(x) + sign * grad log p_t(y | x)`` (sign 1: the exact posterior; -1: flipped)."""

    def __init__(
        self, prior: GaussianMixture, posterior: GaussianMixture, alphas_cumprod: Tensor, sign: float
    ):
        self.prior = GaussianMixtureLatentPrior(prior, alphas_cumprod)
        self.post = GaussianMixtureLatentPrior(posterior, alphas_cumprod)
        self.alphas_cumprod = self.prior.alphas_cumprod
        self.sign = float(sign)

    def eps(self, z_t: Tensor, t: int) -> Tensor:
        ab = self.prior.alpha_bar(t)
        sp = self.prior.score_at(z_t, ab)
        score = sp + self.sign * (self.post.score_at(z_t, ab) - sp)
        return -((1.0 - ab) ** 0.5) * score


@dataclass
class GuidanceTrace:
    """Per step: ``abar``, cosine and norm ratio of the method's guidance displacement to the exact one."""

    alpha: list = field(default_factory=list)
    cosine: list = field(default_factory=list)
    ratio: list = field(default_factory=list)


def method_config(method: str, num_steps: int, eta: float, omega: float, gamma: float) -> PSLDConfig:
    """The configuration each method runs under (norm loss as the official code, trailing DDIM timesteps)."""
    core = {"oracle": "dps", "flipped": "dps", "unguided": "dps"}.get(method, method)
    guided = method not in ("oracle", "flipped", "unguided")
    return PSLDConfig(
        method=core,
        num_steps=num_steps,
        eta=eta,
        omega=omega if guided else 0.0,
        gamma=gamma if method in ("psld", "gml") else 0.0,
        loss="norm",
        glue="adjoint",
        timestep_spacing="trailing",
    )


def decoder_basis(d: int, seed: int = 0) -> Tensor:
    """The orthonormal ``S`` ``[d + 16, d]`` of the latent methods (fixed per ``d``). With ``A_x = A S^T``
    every quantity of LDPS/GML/PSLD in ``z`` is independent of the pixel dimension (docs/theory.md §10.3)."""
    return lm.random_subspace(d + 16, d, seed=seed)


def run_method(
    problem: GMMProblem,
    method: str,
    *,
    num_steps: int,
    eta: float,
    n: int,
    generator: torch.Generator,
    omega: float = 0.2,
    gamma: float = 0.1,
    alphas_cumprod: Tensor | None = None,
    trace_samples: int = 0,
) -> tuple[Tensor, GuidanceTrace | None]:
    """``n`` samples ``[n, d]`` of ``method`` on ``problem`` (and the guidance trace on ``trace_samples``).

    The trace compares, at every step, the displacement the method's guidance applies to ``z_{t-1}`` with
    the exact one: replacing the prior's eps by the posterior's moves the DDIM update by
    ``kappa_t grad log p_t(y | z_t)``, ``kappa_t = sqrt(1 - a)(sqrt(a'(1 - a)/a) - sqrt(1 - a' - s^2))``.
    """
    ac = lm.prior.check_alphas_cumprod(alphas_cumprod)
    d = problem.prior.d
    cfg = method_config(method, num_steps, eta, omega, gamma)
    latents = torch.randn(n, d, generator=generator, dtype=F64)
    if method in ("oracle", "flipped", "unguided"):
        sign = {"oracle": 1.0, "flipped": -1.0, "unguided": 0.0}[method]
        prior = _GuidedOraclePrior(problem.prior, problem.posterior, ac, sign)
        op, enc, dec = MatrixOperator(problem.A), None, None
    elif method == "dps":
        prior = GaussianMixtureLatentPrior(problem.prior, ac)
        op, enc, dec = MatrixOperator(problem.A), None, None
    elif method in ("ldps", "gml", "psld"):
        prior = GaussianMixtureLatentPrior(problem.prior, ac)
        S = decoder_basis(d)
        ae = lm.SubspaceAutoencoder(S)
        op, enc, dec = MatrixOperator(problem.A @ S.T), ae.encoder, ae.decoder
    else:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS + NEGATIVES)}")
    y = problem.y.expand(n, -1)
    trace = None
    callback = None
    if trace_samples and cfg.guided:
        trace = GuidanceTrace()
        exact = GaussianMixtureLatentPrior(problem.posterior, ac)
        sched, seen = schedule_for(cfg, ac)
        state = {"z": latents}
        m = min(trace_samples, n)

        def callback(i: int, t: int, st: dict) -> None:
            z_t = state["z"][:m]
            a, a_prev = float(sched.alpha[i]), float(sched.alpha_prev[i])
            s = ddim_sigma(a, a_prev, cfg.eta)
            kappa = (1 - a) ** 0.5 * ((a_prev * (1 - a) / a) ** 0.5 - max(1 - a_prev - s * s, 0.0) ** 0.5)
            g_exact = exact.score_at(z_t, a) - prior.score_at(z_t, a)
            with torch.enable_grad():
                zi = z_t.detach().requires_grad_(True)
                z0 = (zi - (1 - a) ** 0.5 * prior.eps(zi, int(seen[i]))) / a**0.5
                ident = enc is None  # pixel-space methods: identity encoder/decoder, as the core
                grad, *_ = guidance(
                    zi, z0, _identity if ident else enc, _identity if ident else dec, op, y[:m], cfg
                )
            want, got = kappa * g_exact, -grad
            cos = (want * got).sum(1) / (want.norm(dim=1) * got.norm(dim=1)).clamp_min(1e-300)
            trace.alpha.append(a)
            trace.cosine.append(float(cos.mean()))
            trace.ratio.append(float((got.norm(dim=1) / want.norm(dim=1).clamp_min(1e-300)).median()))
            state["z"] = st["latents"]

    out = sample(prior, enc, dec, op, y, config=cfg, generator=generator, latents=latents, callback=callback)
    return out.z, trace


def _identity(x: Tensor) -> Tensor:
    return x


# ------------------------------------------------------------------ DPS as the MCGdiff authors run it
def mcgdiff_alphas_cumprod() -> Tensor:
    """The schedule of the MCGdiff ``gmm.py``: ``[1] + cumprod(1 - linspace(0.02, 1e-4, 999))`` (1000 values,
    ``abar_0 = 1``; note the *decreasing* betas, large near the data end)."""
    betas = torch.linspace(0.02, 1e-4, 999, dtype=F64)
    return torch.cumprod(torch.cat([torch.ones(1, dtype=F64), 1 - betas]), 0)


def mcgdiff_timesteps(ac: Tensor, singular_values: Tensor, n_steps: int, var: float) -> list[int]:
    """The timesteps ``gmm.py`` gives DPS (``get_optimal_timesteps_from_singular_values``), ported with
    its quirk: the "optimal" index is taken in the *flattened sorted unique* values of
    ``var abar - (1 - abar) s^2``, not per singular value. Steps evenly in ``sqrt(abar)`` down to
    ``sqrt(abar) = 0.01``, then evenly in ``t`` to the end."""
    vals = torch.unique(var * ac[None, :] - (1 - ac)[None, :] * singular_values[:, None] ** 2)
    optimal = sorted({int(vals.abs().argmin())})
    if optimal[0] == 0:
        optimal = optimal[1:]
    root = ac.sqrt()
    end = int(torch.nonzero(root < 1e-2)[0])
    target = float(root[0] - root[end]) / (n_steps - 1 - len(optimal))
    ts, last = [0], float(root[0])
    for i in range(1, end):
        if last - float(root[i]) >= target or i in optimal:
            ts.append(i)
            last = float(root[i])
    tail = (
        torch.ceil(torch.linspace(ts[-1], ac.numel() - 1, n_steps - len(ts) + 1, dtype=F64)).long().tolist()
    )
    return ts + tail[1:]


def mcgdiff_dps(
    prior: GaussianMixture,
    A: Tensor,
    y: Tensor,
    *,
    n: int,
    eta: float,
    timesteps: list[int],
    alphas_cumprod: Tensor,
    generator: torch.Generator,
    zeta: float = 0.1,
) -> Tensor:
    """DPS as ``dps_jax`` in the MCGdiff ``gmm.py``: from ``t`` to ``t' < t`` (``a``, ``a'`` their ``abar``)::

        x0  = (x + (1 - a) score_t(x)) / sqrt(a)                              exact Tweedie
        x'  = sqrt(a/a') (1 - a')/(1 - a) x + sqrt(a') (1 - a/a')/(1 - a) x0   DDPM posterior mean
              + eta sqrt((1 - a')/(1 - a) (1 - a/a')) xi                      DDPM std scaled by eta
              - zeta grad ||y - A x0||^2 / ||y - A x0||

    The bias: for ``eta < 1`` the mean is DDPM's but the noise is shrunk, which is *not* DDIM(eta) (DDIM
    changes the mean's eps coefficient with the noise so that every marginal is kept). Even with the exact
    score and ``zeta = 0`` the samples are under-dispersed (docs/theory.md §10.4 gives the variance).
    """
    ac = alphas_cumprod
    x = torch.randn(n, prior.d, generator=generator, dtype=F64)
    for t, t_prev in zip(timesteps[1:][::-1], timesteps[:-1][::-1], strict=True):
        a, ap = float(ac[t]), float(ac[t_prev])
        with torch.enable_grad():
            xr = x.detach().requires_grad_(True)
            x0 = (xr + (1 - a) * prior.noised(a).score(xr)) / a**0.5
            err = (y - x0 @ A.T).norm(dim=1)
            (grad,) = torch.autograd.grad(err.pow(2).sum(), xr) if zeta > 0 else (torch.zeros_like(xr),)
        std = eta * ((1 - ap) / (1 - a) * (1 - a / ap)) ** 0.5
        c1 = (a / ap) ** 0.5 * (1 - ap) / (1 - a)
        c2 = ap**0.5 * (1 - a / ap) / (1 - a)
        xi = torch.randn(x.shape, generator=generator, dtype=F64)
        x = c1 * x + c2 * x0.detach() + std * xi
        if zeta > 0:
            x = x - grad * (zeta / err.detach().clamp_min(1e-300))[:, None]
        x = x.detach()
    return x


def mcgdiff_variance(alphas_cumprod: Tensor, timesteps: list[int], eta: float) -> float:
    """Final variance of :func:`mcgdiff_dps` with ``zeta = 0`` on ``N(0, 1)`` data (exact score ``-x``, so
    ``x0 = sqrt(a) x``): ``v' = (c1 + c2 sqrt(a))^2 v + eta^2 (1 - a')/(1 - a) (1 - a/a')``, ``v_T = 1``.
    The truth is 1. Since ``c1 + c2 sqrt(a) = sqrt(a/a')``, in the small-step limit ``v`` relaxes to
    ``eta^2``: the update shrinks every mode's spread to about ``eta`` whatever the step count (``eta = 1``:
    only the step-size error remains)."""
    v = 1.0
    for t, t_prev in zip(timesteps[1:][::-1], timesteps[:-1][::-1], strict=True):
        a, ap = float(alphas_cumprod[t]), float(alphas_cumprod[t_prev])
        c1 = (a / ap) ** 0.5 * (1 - ap) / (1 - a)
        c2 = ap**0.5 * (1 - a / ap) / (1 - a)
        v = (c1 + c2 * a**0.5) ** 2 * v + eta**2 * (1 - ap) / (1 - a) * (1 - a / ap)
    return v


def tv_distance(p: Tensor, q: Tensor) -> float:
    """Total variation ``sum |p - q| / 2`` between two weight vectors."""
    return float((p - q).abs().sum() / 2)
