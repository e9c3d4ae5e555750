"""T6 (docs/theory.md T6): pixel versus latent guidance, and where the ambient dimension d enters.

1. With the exact subspace prior, a pixel DPS chain (``method="dps"``,
   :class:`linear_model.PixelSubspacePrior`) and a latent DPS chain (``method="ldps"``) started from
   ``x_T`` and ``z_T = S^T x_T`` end with ``S^T x_0 = z_0`` and ``(I - P) x_0 = 0``: both run through
   :func:`psld.sample`.
2. Fixed-point step thresholds, found by bracketing the step at which the guided iteration
   (:func:`verification.fixed_point.iterate`, i.e. the sampler's own guidance map) stops contracting:
   latent and pixel-exact equal ``1/(abar lambda_max(M))`` at every d; the pixel ridge prior's threshold is
   ``1/lambda_max(V^T A^T A V)`` and falls with d. All three use the same noise level ``1 - abar = 1e-4``
   (``alphas_cumprod[0]`` of the linear schedule); docs/theory.md §7.1 uses ``abar = 1`` for the first two,
   which shifts them by the factor ``1/abar = 1.0001``.
3. ``lambda_max(A^T A)/lambda_max(M)`` follows ``(sqrt(d) + sqrt(l))^2/(sqrt(l) + sqrt(k))^2 ~ d/l``.
4. A pixel chain stopped at ``t_min`` without a final projection carries
   ``E||(I - P) x||^2 = (d - k)(1 - abar_{t_min})`` (theory's 1-based ``t_min``, i.e.
   ``alphas_cumprod[t_min - 1]``).

Negative case: with the exact projector denoiser no d-dependence of the step appears (the normalised
latent thresholds ``omega abar lambda_max(M)`` spread by < 1e-3 over d) while the ridge's spread is large.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import linear_model as lm
from psld.operators import MatrixOperator
from psld.protocols import Identity
from verification.checks.t7_full_chain import F64, gen, latent_chain
from verification.fixed_point import iterate
from verification.result import CheckResult, level_size, register

NAME = "t6-pixel-vs-latent"


# ------------------------------------------------------------------------------------ 1. equivalence
def pixel_latent_gap(
    d: int,
    k: int,
    l: int,
    *,
    seed: int = 0,
    batch: int = 4,
    num_steps: int = 100,
    omega_frac: float = 0.5,
    ridge: float = 0.0,
    alphas_cumprod: Tensor | None = None,
) -> dict:
    """Pixel DPS and latent DPS DDIM chains from ``x_T`` and ``z_T = S^T x_T`` (one instance, ``batch``
    starts).

    ``omega = omega_frac/s_max``. Returns ``latent_gap = max ||S^T x_0 - z_0||/||z_0||`` and
    ``off_manifold = max ||(I - P) x_0||/||x_0||``. With ``ridge > 0`` the pixel prior is the ridge prior
    (the negative case: the chains then differ).
    """
    ac = lm.prior.check_alphas_cumprod(alphas_cumprod)
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g)
    A = lm.gaussian_matrix(l, d, seed=g)
    w0 = torch.randn(batch, k, generator=g, dtype=F64)
    y = lm.measure(A, w0 @ S.T)
    omega = omega_frac / float(lm.spectrum(A, S).s_max)
    xT = torch.randn(batch, d, generator=g, dtype=F64)
    zT = xT @ S
    pix = latent_chain(
        S,
        A,
        y,
        method="dps",
        omega=omega,
        num_steps=num_steps,
        latents=xT,
        alphas_cumprod=ac,
        prior=lm.PixelSubspacePrior(S, ac, ridge=ridge),
    )
    lat = latent_chain(
        S, A, y, method="ldps", omega=omega, num_steps=num_steps, latents=zT, alphas_cumprod=ac
    )
    x0, z0 = pix.x, lat.z
    off = x0 - (x0 @ S) @ S.T
    return dict(
        latent_gap=float(((x0 @ S - z0).norm(dim=1) / z0.norm(dim=1)).max()),
        off_manifold=float((off.norm(dim=1) / x0.norm(dim=1)).max()),
        rel_error=float(((z0 - w0).norm(dim=1) / w0.norm(dim=1)).max()),
    )


# ------------------------------------------------------------------------------------ 2. thresholds
class _Tweedie:
    """The pixel prior's Tweedie mean ``x -> V_t x`` at a fixed timestep (the fixed-point 'decoder')."""

    def __init__(self, prior: lm.PixelSubspacePrior, t: int):
        self.prior, self.t = prior, t

    def __call__(self, x: Tensor) -> Tensor:
        return self.prior.tweedie_mean(x, self.t)


def bracket_threshold(
    diverges, center: float, *, window: float = 4.0, grid: int = 33, iters=(100, 1000, 1000)
):
    """Bracket the smallest diverging step in ``[center/window, center*window]``.

    ``diverges(omegas [G], n)`` runs the guided iteration ``n`` times at each step and says which diverged.
    Round 0 scans a geometric grid, later rounds a linear grid inside the last bracket, with ``iters[r]``
    iterations. Fewer iterations only move the apparent transition up (by ``~ log(||r_0||/|q^T r_0|)/(2n)``
    relative), so a short first round is safe when its grid cell is much wider than that; the refining
    rounds should use the full count. Returns ``(estimate, lo, hi, monotone)``: the bracket midpoint
    (``nan`` when the window holds no transition), the final bracket and whether every scan was monotone.
    """
    lo, hi = center / window, center * window
    monotone = True
    for r, n in enumerate(iters):
        if r == 0:
            om = torch.logspace(math.log10(lo), math.log10(hi), grid, dtype=F64)
        else:
            om = torch.linspace(lo, hi, grid, dtype=F64)
        div = diverges(om, n)
        if r == 0 and (bool(div[0]) or not bool(div.any())):
            return math.nan, lo, hi, monotone
        j = int(torch.nonzero(div)[0]) if bool(div.any()) else grid - 1
        monotone &= bool(div[j:].all()) and not (r > 0 and j == 0)  # j == 0: the coarser bracket was wrong
        lo, hi = (float(om[j - 1]), float(om[j])) if j > 0 else (lo, float(om[0]))
    return 0.5 * (lo + hi), lo, hi, monotone


def _diverges_fn(z_start: Tensor, decoder, op, y: Tensor, c: float):
    """``diverges(omegas, n)``: ``||A D(c z_n) - y|| > (1 + 1e-6) ||A D(c z_0) - y||`` for any of the starts
    (the margin keeps a step exactly at the bound, where the top factor is ``-1``, from counting as
    divergent through round-off)."""
    ns = z_start.shape[0]

    def diverges(omegas: Tensor, n: int) -> Tensor:
        G = omegas.numel()
        z = z_start.repeat(G, 1)
        yy = y[:1].expand(G * ns, -1)
        r0 = (op.forward(decoder(c * z)) - yy).norm(dim=1)
        blow = 1e8 * float(z_start.norm(dim=1).max())
        zn = iterate(
            z,
            Identity(),
            decoder,
            op,
            yy,
            omega=omegas.repeat_interleave(ns),
            n=n,
            method="ldps",
            c=c,
            blowup=blow,
        )
        rn = (op.forward(decoder(c * zn)) - yy).norm(dim=1)
        bad = ~torch.isfinite(rn) | (rn > (1 + 1e-6) * r0)
        return bad.view(G, ns).any(dim=1)

    return diverges


def step_thresholds(
    d: int,
    k: int,
    l: int,
    *,
    seed: int = 0,
    ridge: float = 1e-3,
    t: int = 0,
    n_starts: int = 4,
    grid: int = 33,
    iters=(100, 1000, 1000),
    variants=("latent", "pixel_exact", "ridge"),
    alphas_cumprod: Tensor | None = None,
) -> dict:
    """:func:`thresholds_for` on a Gaussian instance from ``seed`` (``S`` orthonormal, ``A ~ N(0, 1/l)``)."""
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g)
    A = lm.gaussian_matrix(l, d, seed=g)
    w0 = torch.randn(k, generator=g, dtype=F64)
    return thresholds_for(
        S,
        A,
        w0,
        seed=seed + 1,
        ridge=ridge,
        t=t,
        n_starts=n_starts,
        grid=grid,
        iters=iters,
        variants=variants,
        alphas_cumprod=alphas_cumprod,
    )


def thresholds_for(
    S: Tensor,
    A: Tensor,
    w0: Tensor,
    *,
    seed: int = 0,
    ridge: float = 1e-3,
    t: int = 0,
    n_starts: int = 4,
    grid: int = 33,
    iters=(100, 1000, 1000),
    variants=("latent", "pixel_exact", "ridge"),
    alphas_cumprod: Tensor | None = None,
) -> dict:
    """Empirical and theoretical fixed-point step thresholds at timestep ``t`` (``abar = alphas_cumprod[t]``).

    * ``latent``: ``z <- z - omega grad ||y - A S (c z)||^2``, ``c = sqrt(abar)``; theory ``1/(abar s_max)``
    * ``pixel_exact``: decoder ``x -> sqrt(abar) P x`` (the exact pixel Tweedie); the same theory
    * ``ridge``: decoder ``x -> V x`` (ridge Tweedie, ``Sigma_x = S S^T + ridge I``); theory
      ``1/lambda_max(V^T A^T A V)``

    Divergence = the measurement residual after ``n`` iterations exceeds the initial one, for any of
    ``n_starts`` random starts (the latent starts mapped by ``S`` for the pixel chains; the ridge starts
    also get an off-subspace part). The search window is ``theory * [1/4, 4]``; the empirical value is the
    midpoint of the final bracket (``nan`` if the window holds no transition). Noiseless ``y = A S w0``.
    """
    ac = lm.prior.check_alphas_cumprod(alphas_cumprod)
    ab = float(ac[t])
    d, k = S.shape
    g = gen(seed)
    y = lm.measure(A, S @ w0).unsqueeze(0)
    op = MatrixOperator(A)
    s_max = float(lm.spectrum(A, S).s_max)
    z_start = torch.randn(n_starts, k, generator=g, dtype=F64)
    x_start = z_start @ S.T
    off = torch.randn(n_starts, d, generator=g, dtype=F64) @ (torch.eye(d, dtype=F64) - S @ S.T)
    out = dict(
        d=d,
        abar=ab,
        s_max=s_max,
        lam_AtA=float(torch.linalg.eigvalsh(A @ A.T)[-1]),
        theory_latent=float(lm.latent_step_bound(s_max, c=ab**0.5)),
        theory_pixel_exact=float(lm.pixel_exact_step_bound(A, S, ab)),
        theory_ridge=float(lm.pixel_ridge_step_bound(A, S, ridge, ab)),
        brackets={},
        monotone=True,
        resolution={},
    )
    setups = {
        "latent": (z_start, lm.SubspaceAutoencoder(S).decoder, ab**0.5, out["theory_latent"]),
        "pixel_exact": (x_start, _Tweedie(lm.PixelSubspacePrior(S, ac), t), 1.0, out["theory_latent"]),
        "ridge": (
            x_start + off,
            _Tweedie(lm.PixelSubspacePrior(S, ac, ridge=ridge), t),
            1.0,
            out["theory_ridge"],
        ),
    }
    for name in variants:
        start, dec, c, center = setups[name]
        est, lo, hi, mono = bracket_threshold(
            _diverges_fn(start, dec, op, y, c), center, grid=grid, iters=iters
        )
        out[name] = est
        out["brackets"][name] = (lo, hi)
        out["resolution"][name] = (hi - lo) / est if est == est else math.nan
        out["monotone"] &= mono
    return out


# ------------------------------------------------------------------------------------ 3. lambda ratio
def lambda_ratio(d: int, k: int, l: int, *, seed: int = 0, n_inst: int = 32) -> dict:
    """Median over Gaussian instances of ``lambda_max(A^T A)/lambda_max(M)`` against
    ``(sqrt(d) + sqrt(l))^2/(sqrt(l) + sqrt(k))^2``."""
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g, batch=n_inst)
    A = lm.gaussian_matrix(l, d, seed=g, batch=n_inst)
    lam_A = torch.linalg.eigvalsh(A @ A.transpose(-1, -2))[:, -1]
    ratio = lam_A / lm.spectrum(A, S).s_max
    pred = (d**0.5 + l**0.5) ** 2 / (l**0.5 + k**0.5) ** 2
    return dict(predicted=pred, measured=float(ratio.median()), lam_AtA=float(lam_A.median()))


# ------------------------------------------------------------------------------------ 4. off-manifold energy
def off_manifold_energy(
    d: int,
    k: int,
    l: int,
    *,
    seed: int = 0,
    n_chains: int = 64,
    t_min: int = 20,
    num_steps: int = 1000,
    omega_frac: float = 0.5,
    alphas_cumprod: Tensor | None = None,
) -> dict:
    """Mean ``||(I - P) x_{t_min}||^2`` over ``n_chains`` guided pixel DPS chains (``eta = 1``) observed at
    theory time ``t_min`` (state ``alphas_cumprod[t_min - 1]``), against ``(d - k)(1 - abar_{t_min})``.

    The chain is captured through the sampler's callback; ``steps_offset`` aligns the visited timesteps
    with ``t_min`` when ``num_steps < T``. Returns ``predicted``, ``measured`` and the Monte Carlo ``sd``.
    """
    from psld.config import PSLDConfig
    from psld.sampler import sample

    ac = lm.prior.check_alphas_cumprod(alphas_cumprod)
    T = ac.numel()
    ratio = T // num_steps
    target = t_min - 1  # 0-based index of theory's abar_{t_min}
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g)
    A = lm.gaussian_matrix(l, d, seed=g)
    w0 = torch.randn(1, k, generator=g, dtype=F64)
    y = lm.measure(A, w0 @ S.T).expand(n_chains, -1)
    omega = omega_frac / float(lm.spectrum(A, S).s_max)
    cfg = PSLDConfig(
        method="dps", num_steps=num_steps, eta=1.0, omega=omega, loss="squared", steps_offset=target % ratio
    )
    seen: dict[str, Tensor] = {}

    def grab(i, t, state):
        if t - ratio == target:
            seen["x"] = state["latents"].clone()

    res = sample(
        lm.PixelSubspacePrior(S, ac),
        None,
        None,
        MatrixOperator(A),
        y,
        config=cfg,
        generator=g,
        latent_shape=(d,),
        callback=grab,
    )

    def energy(x: Tensor) -> Tensor:
        return (x - (x @ S) @ S.T).pow(2).sum(1)

    ab = float(ac[target])
    pred = float(lm.off_manifold_energy(d, k, ab))
    sd = (1 - ab) * (2 * (d - k) / n_chains) ** 0.5
    return dict(
        predicted=pred,
        measured=float(energy(seen["x"]).mean()),
        sd=sd,
        abar=ab,
        final=float(energy(res.x).mean()),
    )


# ------------------------------------------------------------------------------------ the check
def spread(values) -> float:
    """Relative spread ``(max - min)/mean``."""
    v = torch.as_tensor(values, dtype=F64)
    return float((v.max() - v.min()) / v.mean())


@register(
    NAME, "T6: pixel vs latent guidance; d enters only off the subspace (ridge) and as off-manifold energy"
)
def check(*, level: str = "default", seed: int = 0) -> list[CheckResult]:
    k, l = 8, 16
    dims = level_size(level, (16, 64, 256), (16, 64, 256), (16, 64, 256, 1024))
    eq_steps = level_size(level, 100, 1000, 1000)
    iters = level_size(level, (100, 1000, 1000), (400, 4000, 4000), (400, 4000, 4000))
    grid = level_size(level, 17, 33, 33)
    n_chains = level_size(level, 32, 64, 256)
    energy_steps = level_size(level, 100, 1000, 1000)
    rows: list[CheckResult] = []

    gaps = {d: pixel_latent_gap(d, k, l, seed=seed + d, num_steps=eq_steps) for d in dims}
    worst = max(max(g["latent_gap"], g["off_manifold"]) for g in gaps.values())
    rows.append(
        CheckResult(
            NAME,
            "DDIM pixel (exact subspace prior) and latent chains coincide: S^T x0 = z0, (I - P) x0 = 0",
            0.0,
            worst,
            "max relative gap <= 1e-10",
            worst <= 1e-10,
            dict(num_steps=eq_steps, per_d={d: g for d, g in gaps.items()}),
        )
    )

    th = [step_thresholds(d, k, l, seed=seed + 100 + d, iters=iters, grid=grid) for d in dims]
    for r in th:
        lat_err = abs(r["latent"] / r["theory_latent"] - 1)
        pe = abs(r["pixel_exact"] / r["latent"] - 1)
        ok = lat_err <= 5e-3 and r["latent"] >= r["theory_latent"] * (1 - 1e-6) and pe <= 1e-3
        rows.append(
            CheckResult(
                NAME,
                f"fixed-point threshold d={r['d']}: latent = pixel-exact = 1/(abar lambda_max(M))",
                r["theory_latent"],
                r["latent"],
                "latent within rtol 5e-3 and >= theory; pixel-exact = latent within rtol 1e-3",
                bool(ok),
                dict(
                    pixel_exact=r["pixel_exact"],
                    rel_dev=lat_err,
                    pixel_vs_latent=pe,
                    abar=r["abar"],
                    lambda_max_M=r["s_max"],
                    brackets=r["brackets"],
                    bracket_resolution=r["resolution"],
                    iterations=iters,
                    monotone=r["monotone"],
                ),
            )
        )
    for r in th:
        err = abs(r["ridge"] / r["theory_ridge"] - 1)
        rows.append(
            CheckResult(
                NAME,
                f"pixel-ridge (eps=1e-3) fixed-point threshold d={r['d']} = 1/lambda_max(V^T A^T A V)",
                r["theory_ridge"],
                r["ridge"],
                "rtol 5e-3",
                err <= 5e-3,
                dict(rel_dev=err, lambda_max_AtA=r["lam_AtA"], latent_threshold=r["latent"]),
            )
        )
    ridge = [r["ridge"] for r in th]
    falling = all(b < a for a, b in zip(ridge, ridge[1:], strict=False))
    rows.append(
        CheckResult(
            NAME,
            f"pixel-ridge threshold decreases with d = {list(dims)}",
            "strictly decreasing",
            ", ".join(f"{v:.4g}" for v in ridge),
            "strictly decreasing",
            falling,
            dict(d=list(dims), ridge=ridge),
        )
    )

    for d in dims:
        r = lambda_ratio(d, k, l, seed=seed + 200 + d)
        factor = max(r["measured"] / r["predicted"], r["predicted"] / r["measured"])
        rows.append(
            CheckResult(
                NAME,
                f"lambda_max(A^T A)/lambda_max(M) at d={d} ~ (sqrt d + sqrt l)^2/(sqrt l + sqrt k)^2 "
                "(median, "
                "32 instances)",
                r["predicted"],
                r["measured"],
                "within a factor 1.5",
                factor <= 1.5,
                dict(factor=factor, median_lambda_max_AtA=r["lam_AtA"]),
            )
        )

    for d in dims:
        e = off_manifold_energy(d, k, l, seed=seed + 300 + d, n_chains=n_chains, num_steps=energy_steps)
        z = (e["measured"] - e["predicted"]) / e["sd"]
        rows.append(
            CheckResult(
                NAME,
                f"off-manifold energy of pixel DPS chains stopped at t_min=20, d={d}: (d-k)(1-abar)",
                e["predicted"],
                e["measured"],
                "within 4 Monte Carlo sd",
                abs(z) <= 4.0,
                dict(
                    z=z,
                    sd=e["sd"],
                    chains=n_chains,
                    num_steps=energy_steps,
                    abar_tmin=e["abar"],
                    final_output_energy=e["final"],
                ),
            )
        )

    norm_lat = [r["latent"] * r["abar"] * r["s_max"] for r in th]
    norm_rid = [r["ridge"] * r["abar"] * r["s_max"] for r in th]
    sl, sr = spread(norm_lat), spread(norm_rid)
    rows.append(
        CheckResult(
            NAME,
            "negative: exact projector shows no d-dependence of the step (spread of omega abar s_max over d)",
            0.0,
            sl,
            "latent spread < 1e-3 while ridge spread > 0.5",
            bool(sl < 1e-3 and sr > 0.5),
            dict(
                latent_normalised=norm_lat,
                ridge_normalised=norm_rid,
                ridge_spread=sr,
                d=list(dims),
                bracket_resolution=max(r["resolution"]["latent"] for r in th),
                note="each search is centred on its own theory; the spread is resolved to the bracket width",
            ),
        )
    )
    return rows
