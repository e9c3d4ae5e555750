"""T7 (docs/theory.md T7): the full guided chain obeys one scalar recursion per eigendirection of ``M``.

Every chain here is :func:`psld.sampler.sample` with ``E = S^T``, ``D = S``, the exact ``N(0, I)`` latent
prior, squared losses, noiseless ``y`` and the PSLD glue. In the eigenbasis ``M = Q diag(s) Q^T`` the
coordinate ``u = q_j^T z`` follows ``u_{t-1} = a_t u_t + b_t w + sqrt(var_t) xi``
(:func:`linear_model.eigen_recursion_trajectory`), which is a tolerance-free oracle:

* DDIM (``eta = 0``): the sampler's ``z_0`` equals ``Q m_0`` from the recursion started at ``Q^T z_T``.
* DDPM (``eta = 1``, every training step): ``E||z_0 - w0||^2 = sum_j (m_j - w_j)^2 + v_j`` against Monte
  Carlo.
* Finite-T blow-up: the top-direction rms error just above ``omega s_max = 1`` is predicted exactly.
* Negative case: for ``kappa > 200`` the weakest direction keeps a large error, and the recursion says so.

Instances are rescaled so that ``lambda_max(M) = 1`` (``A -> A/sqrt(s_max)``): then ``omega`` *is*
``omega s_max`` and one scalar ``PSLDConfig.omega`` serves a whole batch of instances. To give several
instances different ``omega s_max`` in one call, their ``A`` is scaled instead (``M -> a^2 M``).
The module also holds the chain helpers the other linear-model checks share.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import linear_model as lm
from psld.config import PSLDConfig
from psld.operators import MatrixOperator
from psld.sampler import SampleOutput, sample
from psld.schedule import DDIMSchedule
from verification.result import CheckResult, level_size, register

NAME = "t7-full-chain"
F64 = torch.float64


# ------------------------------------------------------------------------------------ helpers
def gen(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    return torch.Generator().manual_seed(int(seed))


def chain_alphas(alphas_cumprod: Tensor, config: PSLDConfig) -> Tensor:
    """The ascending ``abar`` values the sampler visits under ``config``, as a schedule for the recursion.

    The recursion of docs/theory.md T7 steps from ``abar_t`` to ``abar_{t-1}`` (``abar_0 = 1``). The sampler's
    pairs ``(alpha[i], alpha_prev[i])`` form such a chain when the timesteps are evenly spaced and the last
    step lands on ``abar = 1``; then the sub-sequence of visited ``abar`` *is* the schedule the recursion
    needs (DDPM's ``beta_t = 1 - abar_t/abar_{t-1}`` reproduces the DDIM ``eta = 1`` kernel for skipped
    steps). Raises ``ValueError`` when the configuration does not chain.
    """
    sched = DDIMSchedule.create(
        alphas_cumprod,
        config.num_steps,
        timestep_spacing=config.timestep_spacing,
        steps_offset=config.steps_offset,
        set_alpha_to_one=config.set_alpha_to_one,
    )
    alpha = sched.alpha.flip(0)
    prev = sched.alpha_prev.flip(0)
    expected = torch.cat([torch.ones(1, dtype=F64), alpha[:-1]])
    if not torch.equal(prev, expected):
        raise ValueError("the sampler's schedule does not chain abar_t -> abar_{t-1} -> ... -> 1")
    return alpha


def repeat(t: Tensor, n: int) -> Tensor:
    """Repeat each instance ``n`` times along the batch axis (instance-major)."""
    return t.repeat_interleave(n, dim=0)


def latent_chain(
    S: Tensor,
    A: Tensor,
    y: Tensor,
    *,
    method: str,
    omega: float,
    gamma: float = 0.0,
    eta: float = 0.0,
    num_steps: int = 1000,
    latents: Tensor | None = None,
    generator: torch.Generator | None = None,
    alphas_cumprod: Tensor | None = None,
    prior=None,
    autoencoder=None,
    callback=None,
) -> SampleOutput:
    """One batched :func:`psld.sample` call in the linear model (squared losses, adjoint glue).

    ``S`` ``[B, d, k]`` and ``A`` ``[B, l, d]`` hold one instance per batch row (or are unbatched);
    ``method="dps"`` runs in pixel space with ``PixelSubspacePrior(S)`` unless ``prior`` is given.
    """
    ac = lm.prior.check_alphas_cumprod(alphas_cumprod)
    op = MatrixOperator(A)
    cfg = PSLDConfig(
        method=method, num_steps=num_steps, eta=eta, omega=omega, gamma=gamma, loss="squared", glue="adjoint"
    )
    if method == "dps":
        prior = prior if prior is not None else lm.PixelSubspacePrior(S, ac)
        return sample(
            prior,
            None,
            None,
            op,
            y,
            config=cfg,
            generator=generator,
            latents=latents,
            latent_shape=(S.shape[-2],),
            callback=callback,
        )
    ae = autoencoder if autoencoder is not None else lm.SubspaceAutoencoder(S)
    prior = prior if prior is not None else lm.GaussianLatentPrior(k=ae.p, alphas_cumprod=ac)
    return sample(
        prior,
        ae.encoder,
        ae.decoder,
        op,
        y,
        config=cfg,
        generator=generator,
        latents=latents,
        latent_shape=(ae.p,),
        callback=callback,
    )


def gaussian_instances(d: int, k: int, l: int, n: int, seed: int, s_max=1.0) -> dict:
    """``n`` instances: orthonormal ``S``, Gaussian ``A`` rescaled so ``lambda_max(M) = s_max`` (a float or
    an ``[n]`` tensor), ``w0 ~ N(0, I_k)`` and noiseless ``y``; with the eigen-decomposition of ``M``."""
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g, batch=n)
    A = lm.gaussian_matrix(l, d, seed=g, batch=n)
    top = lm.spectrum(A, S).s_max
    A = A * (torch.as_tensor(s_max, dtype=F64).expand(n) / top).sqrt().view(n, 1, 1)
    w0 = torch.randn(n, k, generator=g, dtype=F64)
    return _finish(S, A, w0)


def spectrum_instances(d: int, k: int, l: int, eigs: Tensor, seed: int) -> dict:
    """Instances with a prescribed spectrum of ``M``: ``A = U diag(sqrt(s)) V^T S^T + R (I - P)``.

    ``eigs`` is ``[n, k]`` (positive); ``U`` ``[l, k]`` and ``V`` ``[k, k]`` are random orthonormal and
    ``R`` Gaussian, so ``AS = U diag(sqrt(s)) V^T`` and ``M = V diag(s) V^T`` exactly (needs ``l >= k``).
    """
    eigs = torch.as_tensor(eigs, dtype=F64)
    n = eigs.shape[0]
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g, batch=n)
    U, _ = torch.linalg.qr(torch.randn(n, l, k, generator=g, dtype=F64))
    V, _ = torch.linalg.qr(torch.randn(n, k, k, generator=g, dtype=F64))
    R = torch.randn(n, l, d, generator=g, dtype=F64) / l**0.5
    P = S @ S.transpose(-1, -2)
    B = U * eigs.sqrt().unsqueeze(-2) @ V.transpose(-1, -2)
    A = B @ S.transpose(-1, -2) + R @ (torch.eye(d, dtype=F64) - P)
    w0 = torch.randn(n, k, generator=g, dtype=F64)
    return _finish(S, A, w0)


def _finish(S: Tensor, A: Tensor, w0: Tensor) -> dict:
    M = lm.latent_gram(A, S)
    s, Q = torch.linalg.eigh(M)
    y = lm.measure(A, lm.SubspaceAutoencoder(S).decode(w0))
    return dict(S=S, A=A, w0=w0, y=y, M=M, s=s, Q=Q, w=(Q.transpose(-1, -2) @ w0.unsqueeze(-1)).squeeze(-1))


def to_eigen(Q: Tensor, z: Tensor) -> Tensor:
    """Coordinates ``Q^T z`` per row (``Q`` ``[B, k, k]``, ``z`` ``[B, k]``)."""
    return (Q.transpose(-1, -2) @ z.unsqueeze(-1)).squeeze(-1)


def gaussian_ms_sd(mu: Tensor, var: Tensor, n: int) -> Tensor:
    """Standard deviation of the mean of ``n`` draws of ``e^2`` with ``e ~ N(mu, var)``."""
    return ((2 * var**2 + 4 * mu**2 * var) / n).sqrt()


# ------------------------------------------------------------------------------------ measurements
def ddim_recursion_gap(
    d: int,
    k: int,
    l: int,
    *,
    seed: int = 0,
    n_inst: int = 4,
    num_steps: int = 100,
    omega: float = 0.5,
    gamma: float = 0.05,
    alphas_cumprod: Tensor | None = None,
) -> dict:
    """DDIM PSLD chains against the recursion, per instance (``omega``, ``gamma`` in units of ``s_max = 1``).

    Returns ``rel_gap`` ``[n]`` = ``||z_0 - Q m_0||/||Q m_0||`` and the final relative errors.
    """
    ac = lm.prior.check_alphas_cumprod(alphas_cumprod)
    inst = gaussian_instances(d, k, l, n_inst, seed)
    zT = torch.randn(n_inst, k, generator=gen(seed + 1), dtype=F64)
    method = "psld" if gamma > 0 else "ldps"
    out = latent_chain(
        inst["S"],
        inst["A"],
        inst["y"],
        method=method,
        omega=omega,
        gamma=gamma,
        eta=0.0,
        num_steps=num_steps,
        latents=zT,
        alphas_cumprod=ac,
    )
    cfg = PSLDConfig(num_steps=num_steps)
    tr = lm.eigen_recursion_trajectory(
        inst["s"],
        inst["w"],
        chain_alphas(ac, cfg),
        omega,
        gamma,
        ddpm=False,
        m_start=to_eigen(inst["Q"], zT),
        v_start=0.0,
    )
    pred = (inst["Q"] @ tr.m[0].unsqueeze(-1)).squeeze(-1)
    gap = (out.z - pred).norm(dim=-1) / pred.norm(dim=-1)
    err = (out.z - inst["w0"]).norm(dim=-1) / inst["w0"].norm(dim=-1)
    return dict(rel_gap=gap, rel_error=err, kappa=inst["s"][:, -1] / inst["s"][:, 0])


def ddpm_mse(
    d: int,
    k: int,
    l: int,
    *,
    seed: int = 0,
    n_inst: int = 4,
    n_seeds: int = 200,
    num_steps: int = 1000,
    omega: float = 0.5,
    gamma: float = 0.05,
    alphas_cumprod: Tensor | None = None,
) -> dict:
    """Monte Carlo ``E||z_0 - w0||^2`` of DDPM (``eta = 1``) PSLD chains against the recursion.

    ``num_steps = T`` is ancestral DDPM; fewer steps is DDIM with ``eta = 1`` on the visited sub-schedule,
    which the same recursion describes. Returns per-instance ``predicted``, ``measured``, ``sd`` and ``z``.
    """
    ac = lm.prior.check_alphas_cumprod(alphas_cumprod)
    inst = gaussian_instances(d, k, l, n_inst, seed)
    method = "psld" if gamma > 0 else "ldps"
    out = latent_chain(
        repeat(inst["S"], n_seeds),
        repeat(inst["A"], n_seeds),
        repeat(inst["y"], n_seeds),
        method=method,
        omega=omega,
        gamma=gamma,
        eta=1.0,
        num_steps=num_steps,
        generator=gen(seed + 1),
        alphas_cumprod=ac,
    )
    sched = chain_alphas(ac, PSLDConfig(num_steps=num_steps))
    m, v = lm.eigen_recursion(inst["s"], inst["w"], sched, omega, gamma, ddpm=True)
    mu = m - inst["w"]
    pred = (mu**2 + v).sum(-1)
    var = (2 * v**2 + 4 * mu**2 * v).sum(-1)
    sq = (out.z - repeat(inst["w0"], n_seeds)).pow(2).sum(-1).view(n_inst, n_seeds)
    meas = sq.mean(-1)
    sd = (var / n_seeds).sqrt()
    return dict(
        predicted=pred, measured=meas, sd=sd, z=(meas - pred) / sd, kappa=inst["s"][:, -1] / inst["s"][:, 0]
    )


def threshold_and_kappa(
    d: int,
    k: int,
    l: int,
    *,
    seed: int = 0,
    ratios=(1.03, 1.05, 1.06),
    kappa: float = 500.0,
    kappa_step: float = 0.5,
    n_seeds: int = 200,
    num_steps: int = 1000,
    alphas_cumprod: Tensor | None = None,
) -> dict:
    """Latent-DPS DDPM chains (``gamma = 0``) at ``omega s_max`` in ``ratios`` on one Gaussian instance, and
    at ``omega s_max = kappa_step`` on an instance with a geometric spectrum of condition number ``kappa``,
    all in one batched :func:`psld.sample` call (``omega = 1``; the instances' ``A`` carry the scale).

    Returns, per ratio, the predicted and measured top-direction rms error (``q_top^T (z_0 - w0)``) with
    the Monte Carlo sd of the mean square, and for the ill-conditioned instance the same for its weakest
    and strongest directions.
    """
    ac = lm.prior.check_alphas_cumprod(alphas_cumprod)
    ratios = torch.as_tensor(ratios, dtype=F64).reshape(-1)
    base = gaussian_instances(d, k, l, 1, seed)
    eigs = kappa_step * torch.logspace(-math.log10(kappa), 0.0, k, dtype=F64).unsqueeze(0)
    weak = spectrum_instances(d, k, l, eigs, seed + 7)
    nr = ratios.numel()
    scale = torch.cat([ratios.sqrt(), torch.ones(1, dtype=F64)])
    S = torch.cat([base["S"].expand(nr, -1, -1), weak["S"]])
    A = torch.cat([base["A"].expand(nr, -1, -1), weak["A"]]) * scale.view(-1, 1, 1)
    w0 = torch.cat([base["w0"].expand(nr, -1), weak["w0"]])
    y = torch.cat([base["y"].expand(nr, -1), weak["y"]]) * scale.view(-1, 1)
    n = nr + 1
    out = latent_chain(
        repeat(S, n_seeds),
        repeat(A, n_seeds),
        repeat(y, n_seeds),
        method="ldps",
        omega=1.0,
        eta=1.0,
        num_steps=num_steps,
        generator=gen(seed + 2),
        alphas_cumprod=ac,
    )
    s = torch.cat([base["s"] * ratios.view(-1, 1), weak["s"]])
    Q = torch.cat([base["Q"].expand(nr, -1, -1), weak["Q"]])
    w = torch.cat([base["w"].expand(nr, -1), weak["w"]])
    sched = chain_alphas(ac, PSLDConfig(num_steps=num_steps))
    m, v = lm.eigen_recursion(s, w, sched, 1.0, 0.0, ddpm=True)
    mu = m - w
    e = to_eigen(repeat(Q, n_seeds), out.z - repeat(w0, n_seeds)).view(n, n_seeds, k)
    ms = e.pow(2).mean(1)  # [n, k] measured mean squares
    pred_ms = mu**2 + v
    sd = gaussian_ms_sd(mu, v, n_seeds)
    return dict(
        ratios=ratios,
        top_pred=pred_ms[:nr, -1].sqrt(),
        top_meas=ms[:nr, -1].sqrt(),
        top_z=(ms[:nr, -1] - pred_ms[:nr, -1]) / sd[:nr, -1],
        kappa=float(weak["s"][0, -1] / weak["s"][0, 0]),
        weak_pred=float(pred_ms[-1, 0].sqrt()),
        weak_meas=float(ms[-1, 0].sqrt()),
        weak_z=float((ms[-1, 0] - pred_ms[-1, 0]) / sd[-1, 0]),
        strong_pred=float(pred_ms[-1, -1].sqrt()),
        strong_meas=float(ms[-1, -1].sqrt()),
        strong_z=float((ms[-1, -1] - pred_ms[-1, -1]) / sd[-1, -1]),
    )


# ------------------------------------------------------------------------------------ the check
@register(NAME, "T7: full chain = one scalar recursion per eigendirection (DDIM exact, DDPM in mean square)")
def check(*, level: str = "default", seed: int = 0) -> list[CheckResult]:
    d, k, l = 64, 8, 16
    ddim_steps = level_size(level, 100, 1000, 1000)
    n_inst = level_size(level, 3, 6, 12)
    mse_seeds = level_size(level, 100, 300, 1000)
    scan_seeds = level_size(level, 150, 400, 1000)
    ddpm_steps = 1000
    zmax = 4.0
    rows: list[CheckResult] = []

    r = ddim_recursion_gap(d, k, l, seed=seed, n_inst=n_inst, num_steps=ddim_steps, omega=0.5, gamma=0.05)
    gap = float(r["rel_gap"].max())
    rows.append(
        CheckResult(
            NAME,
            "DDIM psld.sample = per-eigendirection recursion (PSLD, omega s_max=.5, gamma s_max^2=.05)",
            0.0,
            gap,
            "max relative gap <= 1e-10",
            gap <= 1e-10,
            dict(
                instances=n_inst,
                num_steps=ddim_steps,
                d=d,
                k=k,
                l=l,
                final_rel_error=[float(x) for x in r["rel_error"]],
                kappa=[float(x) for x in r["kappa"]],
            ),
        )
    )

    r = ddpm_mse(
        d, k, l, seed=seed + 10, n_inst=n_inst, n_seeds=mse_seeds, num_steps=ddpm_steps, omega=0.5, gamma=0.05
    )
    zabs = float(r["z"].abs().max())
    rows.append(
        CheckResult(
            NAME,
            "DDPM E||z0 - w0||^2 = sum_j (m_j - w_j)^2 + v_j (mean over instances)",
            float(r["predicted"].mean()),
            float(r["measured"].mean()),
            f"every instance within {zmax:g} Monte Carlo sd",
            zabs <= zmax,
            dict(
                predicted=[float(x) for x in r["predicted"]],
                measured=[float(x) for x in r["measured"]],
                max_abs_z=zabs,
                seeds_per_instance=mse_seeds,
                num_steps=ddpm_steps,
                kappa=[float(x) for x in r["kappa"]],
            ),
        )
    )

    r = threshold_and_kappa(d, k, l, seed=seed + 20, n_seeds=scan_seeds, num_steps=ddpm_steps)
    theory = {1.03: 1.27, 1.05: 12.0, 1.06: 43.0}
    for i, ratio in enumerate(r["ratios"].tolist()):
        z = float(r["top_z"][i])
        rows.append(
            CheckResult(
                NAME,
                f"finite-T threshold: top-direction rms error at omega s_max = {ratio:g} (latent DPS, DDPM)",
                float(r["top_pred"][i]),
                float(r["top_meas"][i]),
                f"mean square within {zmax:g} Monte Carlo sd",
                abs(z) <= zmax,
                dict(
                    z=z,
                    seeds=scan_seeds,
                    theory_md_instance=theory.get(round(ratio, 2)),
                    note="prediction recomputed from the recursion for this instance (depends on q_top^T w0)",
                ),
            )
        )
    ok = (
        r["weak_pred"] >= 0.1
        and r["weak_meas"] >= 0.1
        and abs(r["weak_z"]) <= zmax
        and abs(r["strong_z"]) <= zmax
    )
    rows.append(
        CheckResult(
            NAME,
            f"negative: kappa = {r['kappa']:.0f} leaves a large weak-direction rms error, as the recursion "
            "predicts",
            r["weak_pred"],
            r["weak_meas"],
            f"both >= 0.1 and mean square within {zmax:g} sd (strong direction too)",
            bool(ok),
            dict(
                kappa=r["kappa"],
                weak_z=r["weak_z"],
                strong_pred=r["strong_pred"],
                strong_meas=r["strong_meas"],
                strong_z=r["strong_z"],
                omega_s_max=0.5,
                seeds=scan_seeds,
            ),
        )
    )
    return rows
