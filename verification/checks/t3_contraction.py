"""T3 (docs/theory.md T3): the guided fixed-point iteration is a contraction, with a sharp step bound.

At a fixed noise level with Tweedie factor ``c`` the guided map of the core,
``z <- z - omega grad L - gamma grad G`` (:func:`verification.fixed_point.iterate`, which calls
:func:`psld.sampler.guidance`), is affine for ``E = S^T``, ``D = S``, squared losses and noiseless ``y``::

    e_{n+1} = (I - 2 c^2 (omega M + gamma M^2)) e_n,      e_n = c z_n - w0

so it contracts iff ``c^2 (omega s_max + gamma s_max^2) < 1``, at the rate
``rho = max_j |1 - 2 c^2 h(s_j)|`` (:func:`linear_model.contraction_rate`). Measured here:

* the envelope ``||e_n|| <= rho^n ||e_0|| (1 + 1e-9) + 1e-12`` at every ``n`` for LDPS, PSLD and GML-DPS
  (whose glue is vacuous, so its rate is LDPS's), with ``c = 1`` and ``c^2 = abar_t`` at a mid ``t``;
  at the rate-optimal step the iteration reaches ``w0/c`` to round-off;
* the glue identities: PSLD residual ``= M(z0hat - w0)``, its loss and gradient, and GML residual ``= 0``;
* above the bound the top-eigenvector component grows by exactly ``(1 - 2 c^2 h(s_max))^n``;
* the empirical step threshold ("no blow-up after ``n`` iterations", a grid of steps run as one batch)
  lies above ``(1 - c^2 gamma s_max^2)/(c^2 s_max)`` and within the excess the exact rate allows.

The module also holds the instance builders (:class:`Problem`) that the T2, T4 and T5 checks share.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

import linear_model as lm
from psld.config import PSLDConfig
from psld.operators import MatrixOperator
from psld.sampler import guidance
from verification.fixed_point import iterate
from verification.result import CheckResult, level_size, register

NAME = "t3-contraction"
F64 = torch.float64
#: the mid timestep whose Tweedie factor gives the ``c < 1`` cases (``c^2 = abar_250`` = 0.52 on the
#: default linear schedule)
MID_T = 250


def gen(seed: int | torch.Generator) -> torch.Generator:
    """A CPU generator from a seed (or the generator itself)."""
    return seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(int(seed))


def single_threaded(fn):
    """Run ``fn`` with one intra-op torch thread (restored afterwards). Every problem here is tiny
    (k <= 64): thread pools only add overhead, and they stall badly on a shared, loaded machine."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        before = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(before)

    return wrapper


def mid_c() -> float:
    """``c = sqrt(abar_t)`` at :data:`MID_T` on the default linear schedule."""
    return float(lm.GaussianLatentPrior(k=1).alphas_cumprod[MID_T]) ** 0.5


# ---------------------------------------------------------------------------------------------- instances
@dataclass(frozen=True)
class Problem:
    """``B`` rows of linear-model problems with everything the checks need.

    Either ``B`` instances of one shape (``S`` ``[B, d, k]``, ``A`` ``[B, l, d]``, a batched
    :class:`psld.operators.MatrixOperator`), or one *shared* instance (``S`` ``[d, k]``, ``A`` ``[l, d]``)
    with ``B`` rows (different ``w0``/``y``/steps/seeds on the same matrices: cheaper). ``w0`` ``[B, k]``,
    ``y`` ``[B, l]`` (noiseless ``A S w0`` unless given), ``ae`` (encoder ``S^T``, decoder ``S``), and per
    row ``M`` ``[B, k, k]`` with ascending eigenvalues ``eigs`` ``[B, k]`` and eigenvectors ``Q`` (columns).
    """

    S: Tensor
    A: Tensor
    w0: Tensor
    y: Tensor
    M: Tensor
    eigs: Tensor
    Q: Tensor
    ae: lm.SubspaceAutoencoder
    op: MatrixOperator

    @property
    def shared(self) -> bool:
        return self.S.dim() == 2

    @property
    def batch(self) -> int:
        return self.w0.shape[0]

    @property
    def k(self) -> int:
        return self.S.shape[-1]

    @property
    def s_min(self) -> Tensor:
        return self.eigs[:, 0]

    @property
    def s_max(self) -> Tensor:
        return self.eigs[:, -1]

    @property
    def kappa(self) -> Tensor:
        return self.s_max / self.s_min

    @property
    def q_top(self) -> Tensor:
        """Unit eigenvector of ``s_max`` per row, ``[B, k]``."""
        return self.Q[:, :, -1]

    def repeat(self, n: int) -> Problem:
        """Each row ``n`` times in a row (row-major), e.g. for a grid of steps."""
        rep = lambda t: t.repeat_interleave(n, dim=0)
        if self.shared:
            return make_problem(self.S, self.A, rep(self.w0), y=rep(self.y))
        return make_problem(rep(self.S), rep(self.A), rep(self.w0), y=rep(self.y))

    def instance(self, b: int) -> Problem:
        """Row ``b`` as a shared one-row problem (unbatched matrices)."""
        if self.shared:
            return make_problem(self.S, self.A, self.w0[b : b + 1], y=self.y[b : b + 1])
        return make_problem(self.S[b], self.A[b], self.w0[b : b + 1], y=self.y[b : b + 1])


def make_problem(S: Tensor, A: Tensor, w0: Tensor, *, y: Tensor | None = None) -> Problem:
    """Build a :class:`Problem` from ``S`` ``[d, k]`` or ``[B, d, k]``, ``A`` ``[l, d]`` or ``[B, l, d]`` and
    ``w0`` ``[B, k]`` (or ``[k]``); ``y`` defaults to the noiseless ``A S w0`` (pass it for noisy data)."""
    S, A, w0 = (torch.as_tensor(t, dtype=F64) for t in (S, A, w0))
    w0 = w0.reshape(-1, S.shape[-1])
    B = w0.shape[0]
    if S.dim() != A.dim() or (S.dim() == 3 and not S.shape[0] == A.shape[0] == B):
        raise ValueError(f"S {list(S.shape)}, A {list(A.shape)} and w0 {list(w0.shape)} do not match")
    M = lm.latent_gram(A, S)
    eigs, Q = torch.linalg.eigh(M)
    if S.dim() == 2:
        M, eigs, Q = M.expand(B, -1, -1), eigs.expand(B, -1), Q.expand(B, -1, -1)
    ae = lm.SubspaceAutoencoder(S)
    op = MatrixOperator(A)
    y = op(ae.decoder(w0)) if y is None else torch.as_tensor(y, dtype=F64).reshape(B, -1)
    return Problem(S, A, w0, y, M, eigs.clamp_min(0.0), Q, ae, op)


def random_problems(
    d: int,
    k: int,
    l: int,
    *,
    batch: int = 1,
    seed: int | torch.Generator = 0,
    kappa_max: float | None = None,
    kappa_min: float | None = None,
    mask: bool = False,
    max_rounds: int = 200,
) -> Problem:
    """``batch`` random instances (docs/theory.md §6 strategy): ``S`` = signed QR of Gaussian, ``A`` Gaussian
    ``N(0, 1/l)`` (or a row mask), ``w0 ~ N(0, I_k)``; only instances with ``rank(AS) = k`` and, if given,
    ``kappa_min <= kappa <= kappa_max`` are kept (drawn in rounds from one generator: deterministic)."""
    g = gen(seed)
    keep_S, keep_A, keep_w = [], [], []
    have = 0
    for _ in range(max_rounds):
        S = lm.random_subspace(d, k, seed=g, batch=batch)
        A = (lm.row_mask_matrix if mask else lm.gaussian_matrix)(l, d, seed=g, batch=batch)
        w0 = torch.randn(batch, k, generator=g, dtype=F64)
        sp = lm.spectrum(A, S)
        ok = sp.rank == k
        if kappa_max is not None:
            ok &= sp.kappa <= kappa_max
        if kappa_min is not None:
            ok &= sp.kappa >= kappa_min
        keep_S.append(S[ok])
        keep_A.append(A[ok])
        keep_w.append(w0[ok])
        have += int(ok.sum())
        if have >= batch:
            break
    if have < batch:
        raise ValueError(
            f"could not draw {batch} instances with kappa in [{kappa_min}, {kappa_max}] (d={d}, k={k}, l={l})"
        )
    cat = lambda ts: torch.cat(ts)[:batch]
    return make_problem(cat(keep_S), cat(keep_A), cat(keep_w))


def steps_for(p: Problem, frac, share=0.0, c: float = 1.0) -> tuple[Tensor, Tensor]:
    """Per-instance ``(omega, gamma)`` with ``c^2 (omega s_max + gamma s_max^2) = frac`` of which the glue
    takes ``share``: ``c^2 gamma s_max^2 = share * frac``, ``c^2 omega s_max = (1 - share) frac``."""
    frac = torch.as_tensor(frac, dtype=F64)
    share = torch.as_tensor(share, dtype=F64)
    c2 = c * c
    omega = (1 - share) * frac / (c2 * p.s_max)
    gamma = share * frac / (c2 * p.s_max**2)
    return omega, gamma


def rate(p: Problem, omega, gamma, c: float = 1.0, method: str = "psld") -> Tensor:
    """Exact contraction rate per instance; the GML and LDPS glues contribute nothing
    (docs/theory.md §4.3, id. 3)."""
    omega = torch.as_tensor(omega, dtype=F64).reshape(-1, 1)
    gamma = torch.as_tensor(gamma, dtype=F64).reshape(-1, 1)
    if method != "psld":
        gamma = torch.zeros_like(gamma)
    return lm.contraction_rate(p.eigs, omega, gamma, c)


# ---------------------------------------------------------------------------------------------- measurements
def envelope(
    p: Problem,
    z0: Tensor,
    *,
    omega,
    gamma,
    c: float = 1.0,
    n: int,
    method: str = "psld",
) -> dict[str, Tensor]:
    """Iterate the core's guided map ``n`` times one step at a time and compare ``||e_n||`` with the bound.

    Returns per instance: ``ratio = max_n ||e_n|| / (rho^n ||e_0|| (1 + 1e-9) + 1e-12)`` (<= 1 is the
    theorem), ``rho``, ``final = ||e_n||`` and ``rel_final = ||e_n||/||e_0||``.
    """
    omega = torch.as_tensor(omega, dtype=F64).expand(p.batch)
    gamma = torch.as_tensor(gamma, dtype=F64).expand(p.batch)
    rho = rate(p, omega, gamma, c, method)
    z = z0
    e0 = (c * z - p.w0).norm(dim=1)
    worst = torch.zeros(p.batch, dtype=F64)
    for i in range(1, n + 1):
        z = iterate(
            z, p.ae.encoder, p.ae.decoder, p.op, p.y, omega=omega, gamma=gamma, n=1, method=method, c=c
        )
        err = (c * z - p.w0).norm(dim=1)
        worst = torch.maximum(worst, err / (rho**i * e0 * (1 + 1e-9) + 1e-12))
    final = (c * z - p.w0).norm(dim=1)
    return {"ratio": worst, "rho": rho, "final": final, "rel_final": final / e0, "z": z}


def glue_identities(p: Problem, z: Tensor, c: float = 1.0) -> dict[str, Tensor]:
    """docs/theory.md §4.3 identities 3-4 through the core, per instance (relative errors):

    ``psld_residual``: ``z0hat - E(glue(D z0hat, y))`` against ``M (z0hat - w0)`` (operator glue + encoder);
    ``psld_loss``: the core's glue loss against ``||M (z0hat - w0)||^2``; ``psld_grad``: the core's glue
    gradient w.r.t. ``z`` against ``2 c M M (z0hat - w0)``; ``gml``: ``||z0hat - E D z0hat|| / ||z0hat||``.

    The residual is computed as a difference ``z0hat - E(...)`` of two vectors of size ``||z0hat||``, so its
    round-off is relative to ``scale = ||M (z0hat - w0)|| + ||z0hat||``; errors are divided by that scale
    (squared for the loss, times ``2c ||M||`` for the gradient).
    """
    z0 = c * z
    target = torch.einsum("bij,bj->bi", p.M, z0 - p.w0)
    resid = z0 - p.ae.encoder(p.op.glue(p.ae.decoder(z0), p.y, "adjoint"))
    tn = target.norm(dim=1)
    scale = tn + z0.norm(dim=1)
    zz = z.detach().clone().requires_grad_(True)
    cfg = PSLDConfig(method="psld", omega=0.0, gamma=1.0, loss="squared")
    grad, _, glue, _ = guidance(zz, c * zz, p.ae.encoder, p.ae.decoder, p.op, p.y, cfg)
    grad_th = 2 * c * torch.einsum("bij,bj->bi", p.M, target)
    zz = z.detach().clone().requires_grad_(True)
    gml_cfg = PSLDConfig(method="gml", omega=0.0, gamma=1.0, loss="squared")
    _, _, gml, _ = guidance(zz, c * zz, p.ae.encoder, p.ae.decoder, p.op, p.y, gml_cfg)
    return {
        "psld_residual": (resid - target).norm(dim=1) / scale,
        "psld_loss": (glue - tn**2).abs() / scale**2,
        "psld_grad": (grad - grad_th).norm(dim=1) / (2 * c * p.s_max * scale),
        "gml": gml.sqrt() / z0.norm(dim=1),
    }


def start_with_top(p: Problem, c: float, g: torch.Generator) -> Tensor:
    """A start ``z0 = (w0 + e0)/c`` whose error ``e0 = q_top + xi/(2||xi||)`` has a top component >= 1/2."""
    xi = torch.randn(p.batch, p.k, generator=g, dtype=F64)
    e0 = p.q_top + 0.5 * xi / xi.norm(dim=1, keepdim=True)
    return (p.w0 + e0) / c


def top_growth(
    p: Problem, z0: Tensor, *, delta: float, share: float = 0.0, c: float = 1.0, n: int, method: str = "psld"
) -> dict[str, Tensor]:
    """Above the bound, ``c^2 h(s_max) = 1 + delta``: the top component of ``e_n`` is
    ``(1 - 2(1 + delta))^n q^T e_0`` exactly. Returns the per-instance relative deviation and the factor."""
    omega, gamma = steps_for(p, 1 + delta, share, c)
    z = iterate(z0, p.ae.encoder, p.ae.decoder, p.op, p.y, omega=omega, gamma=gamma, n=n, method=method, c=c)
    q = p.q_top
    top0 = ((c * z0 - p.w0) * q).sum(1)
    topn = ((c * z - p.w0) * q).sum(1)
    factor = 1 - 2 * (1 + delta)
    pred = factor**n * top0
    return {
        "rel_dev": (topn - pred).abs() / pred.abs(),
        "factor": torch.tensor(factor, dtype=F64),
        "top": topn,
    }


def blowup_excess(p: Problem, e0_top: Tensor, *, c: float, n_iter: int, blowup: float) -> Tensor:
    """Largest ``u = c^2 s_max omega`` that can survive ``n_iter`` iterations, minus the threshold ``1 - g``.

    Above the bound only the top direction matters for a sure blow-up: once
    ``(2(u + g) - 1)^n |e0_top| >= c * blowup + |w0_top|`` we have ``||z_n|| > blowup``. Per row, in ``u``."""
    w0_top = (p.w0 * p.q_top).sum(1).abs()
    ratio = (c * blowup + w0_top) / e0_top.abs()
    return (ratio ** (1.0 / n_iter) - 1) / 2


def empirical_threshold(
    p: Problem,
    *,
    shares=(0.0, 0.25, 0.5),
    c: float = 1.0,
    n_iter: int = 4000,
    points: int = 48,
    blowup: float = 1e4,
    seed: int | torch.Generator = 0,
) -> dict[str, Tensor]:
    """Empirical largest stable ``omega`` ("no blow-up after ``n_iter`` iterations") per instance and glue
    share ``g = c^2 gamma s_max^2``, on a grid run as one batched :func:`~verification.fixed_point.iterate`
    call per instance (per-sample ``omega``/``gamma``, shared matrices).

    In units ``u = c^2 s_max omega`` the theory threshold is ``1 - g``. The grid covers
    ``u/(1 - g) in [1 - x, 1 + 2x]`` with ``x`` the largest excess the exact rate allows
    (:func:`blowup_excess`; the start has ``|e0_top| >= 1/2``), so it brackets the empirical threshold
    whenever the theory holds; ``bracket_ok`` records that its lowest point survived and its highest blew
    up. The empirical threshold is the smallest blown-up grid point, so ``empirical > theory`` is the
    theorem's "every smaller step is stable".

    Returns tensors ``[B, len(shares)]``: ``theory`` and ``empirical`` (as ``omega``), ``excess`` and
    ``excess_bound`` (relative to theory; the bound adds one grid cell) and ``bracket_ok``.
    """
    g_gen = gen(seed)
    shares_t = torch.as_tensor(shares, dtype=F64)
    G = len(shares)
    out = {key: [] for key in ("theory", "empirical", "excess", "excess_bound", "bracket_ok")}
    for b in range(p.batch):
        rows = p.instance(b).repeat(G * points)
        z0 = start_with_top(rows, c, g_gen)
        e0_top = ((c * z0 - rows.w0) * rows.q_top).sum(1)
        u_th = 1 - shares_t
        x = blowup_excess(rows, e0_top, c=c, n_iter=n_iter, blowup=blowup).reshape(G, points).amax(1) / u_th
        r = 1 + x[:, None] * torch.linspace(-1.0, 2.0, points, dtype=F64)  # u / (1 - g), [G, points]
        u = u_th[:, None] * r
        smax = float(rows.s_max[0])
        omega = u.reshape(-1) / (c * c * smax)
        gamma = shares_t.repeat_interleave(points) / (c * c * smax**2)
        z = iterate(
            z0,
            rows.ae.encoder,
            rows.ae.decoder,
            rows.op,
            rows.y,
            omega=omega,
            gamma=gamma,
            n=n_iter,
            method="psld",
            c=c,
            blowup=blowup,
        )
        blown = (~(z.norm(dim=1) <= blowup)).reshape(G, points)
        first = torch.where(blown, torch.arange(points), points - 1).amin(1)
        r_emp = r.gather(1, first[:, None]).squeeze(1)
        cell = 3 * x / (points - 1) * (1 + 1e-9)  # (slack for the rounding of grid points)
        out["theory"].append(u_th / (c * c * smax))
        out["empirical"].append(u_th * r_emp / (c * c * smax))
        out["excess"].append(r_emp - 1)
        out["excess_bound"].append(x + cell)
        out["bracket_ok"].append((~blown[:, 0]) & blown[:, -1])
    return {key: torch.stack(v) for key, v in out.items()}


# ---------------------------------------------------------------------------------------------- the check
@register(NAME, "T3: the guided fixed-point iteration is a contraction with a sharp step bound")
@single_threaded
def check(*, level: str = "default", seed: int = 0) -> list[CheckResult]:
    d, k, l, B = level_size(level, (16, 4, 8, 2), (32, 8, 16, 3), (64, 8, 16, 6))
    kappa_max = level_size(level, 20.0, 30.0, 50.0)
    n_iter = level_size(level, 300, 4000, 4000)
    points = level_size(level, 24, 48, 96)
    g = gen(seed)
    p = random_problems(d, k, l, batch=B, seed=g, kappa_max=kappa_max)
    cs = (1.0, mid_c())
    rows: list[CheckResult] = []

    # 1. envelope and convergence, LDPS / PSLD / GML, c = 1 and c < 1
    fracs = torch.tensor([0.5, 0.9, 0.99], dtype=F64)
    ratios, finals, rhos, n_used = [], [], [], []
    for c in cs:
        # the rate-optimal LDPS step first, then fractions of the bound, per instance
        best = lm.best_ldps_step(p.s_min, p.s_max, c)
        rho_best = rate(p, best, torch.zeros(B, dtype=F64), c, "ldps")
        n = min(int(math.ceil(math.log(1e-13) / math.log(float(rho_best.max())))), 3000)
        n_used.append(n)
        P = p.repeat(1 + len(fracs))
        z0 = torch.randn(P.batch, k, generator=g, dtype=F64)
        for method, share in (("ldps", 0.0), ("psld", 0.3), ("gml", 0.3)):
            f = torch.cat([torch.zeros(B, 1, dtype=F64), fracs.expand(B, -1)], 1).reshape(-1)
            om, ga = steps_for(P, f, share, c)
            best_rows = torch.arange(P.batch) % (1 + len(fracs)) == 0
            om = torch.where(best_rows, best.repeat_interleave(1 + len(fracs)), om)
            ga = torch.where(best_rows, torch.zeros_like(ga), ga)
            res = envelope(P, z0, omega=om, gamma=ga, c=c, n=n, method=method)
            ratios.append(float(res["ratio"].max()))
            finals.append(float(res["rel_final"][best_rows].max()))
            rhos.append(float(res["rho"].max()))
    worst_ratio = max(ratios)
    worst_final = max(finals)
    rows.append(
        CheckResult(
            NAME,
            "||e_n|| <= rho^n ||e_0|| at every n (LDPS, PSLD, GML; c = 1 and c^2 = abar_250), "
            "rho = max_j |1 - 2c^2 h(s_j)|",
            1.0,
            worst_ratio,
            "max_n ||e_n|| / (rho^n ||e_0|| (1 + 1e-9) + 1e-12) <= 1",
            bool(worst_ratio <= 1.0),
            {
                "instances": B,
                "d": d,
                "k": k,
                "l": l,
                "kappa": p.kappa.tolist(),
                "c": list(cs),
                "fractions_of_bound": fracs.tolist(),
                "glue_share_psld_gml": 0.3,
                "iterations": n_used,
                "max_rho": max(rhos),
            },
        )
    )
    rows.append(
        CheckResult(
            NAME,
            "at the rate-optimal step 1/(c^2 (s_max + s_min)) the iteration reaches c z = w0",
            0.0,
            worst_final,
            "||c z_n - w0|| / ||c z_0 - w0|| <= 1e-10 (n from the exact rate)",
            bool(worst_final <= 1e-10),
            {"iterations": n_used},
        )
    )

    # 2. glue identities (docs/theory.md §4.3, 3-4)
    ident = {key: 0.0 for key in ("psld_residual", "psld_loss", "psld_grad", "gml")}
    for c in cs:
        z = torch.randn(B, k, generator=g, dtype=F64) * 2
        res = glue_identities(p, z, c)
        for key in ident:
            ident[key] = max(ident[key], float(res[key].max()))
    worst_ident = max(ident.values())
    rows.append(
        CheckResult(
            NAME,
            "PSLD glue residual = M(z0hat - w0) (vector, loss, gradient); GML glue residual = 0",
            0.0,
            worst_ident,
            "relative <= 1e-12 (to ||M(z0hat - w0)|| + ||z0hat||, the size of the terms subtracted)",
            bool(worst_ident <= 1e-12),
            ident,
        )
    )

    # 3. empirical threshold against (1 - c^2 gamma s_max^2)/(c^2 s_max)
    shares = (0.0, 0.25, 0.5)
    exc, exc_bound, ok_all, table = [], [], True, []
    for c, pp in ((cs[0], p), (cs[1], p.instance(0))):
        th = empirical_threshold(pp, shares=shares, c=c, n_iter=n_iter, points=points, seed=g)
        exc.append(th["excess"].reshape(-1))
        exc_bound.append(th["excess_bound"].reshape(-1))
        ok_all &= bool(th["bracket_ok"].all())
        table += [
            {
                "c": round(c, 6),
                "instance": b,
                "glue_share": shares[j],
                "theory": float(th["theory"][b, j]),
                "empirical": float(th["empirical"][b, j]),
                "excess_bound": float(th["excess_bound"][b, j]),
            }
            for b in range(pp.batch)
            for j in range(len(shares))
        ]
    exc_t, bound_t = torch.cat(exc), torch.cat(exc_bound)
    tol = 5e-3
    if n_iter >= 4000:
        tol_txt = f"0 < rel excess <= {tol:g} (docs/theory.md §7.5) and <= the exact-rate bound"
        passed = bool((exc_t > 0).all() and (exc_t <= tol).all() and (exc_t <= bound_t).all() and ok_all)
    else:
        tol_txt = (
            f"0 < rel excess <= exact-rate bound (max {float(bound_t.max()):.2e}): with only {n_iter} "
            "iterations a step just above the bound needs ~ln(R)/(2n) more to blow up by R"
        )
        passed = bool((exc_t > 0).all() and (exc_t <= bound_t).all() and ok_all)
    rows.append(
        CheckResult(
            NAME,
            f"empirical step threshold (no blow-up after {n_iter} iterations; PSLD, c^2 gamma s_max^2 in "
            f"{list(shares)}; c = 1 and c < 1) is above (1 - c^2 gamma s_max^2)/(c^2 s_max) and close to it",
            float(bound_t.max()),
            float(exc_t.max()),
            tol_txt,
            passed,
            {"min_excess": float(exc_t.min()), "bracket_ok": ok_all, "thresholds": table},
        )
    )

    # 4. negative: above the bound the top component grows exactly
    devs, factors = [], []
    n_grow = 40
    for c in cs:
        for delta, share, method in ((0.05, 0.0, "ldps"), (0.2, 0.0, "ldps"), (0.1, 0.3, "psld")):
            z0 = start_with_top(p, c, g)
            res = top_growth(p, z0, delta=delta, share=share, c=c, n=n_grow, method=method)
            devs.append(float(res["rel_dev"].max()))
            factors.append(float(res["factor"]))
    worst_dev = max(devs)
    rows.append(
        CheckResult(
            NAME,
            f"negative: above the bound (c^2 h(s_max) = 1 + delta, delta in 0.05, 0.2, 0.1) q_top^T e_n = "
            f"(1 - 2(1 + delta))^n q_top^T e_0 (n = {n_grow}): divergence",
            0.0,
            worst_dev,
            "relative deviation <= 1e-8",
            bool(worst_dev <= 1e-8),
            {"growth_factors": factors, "growth_after_n": [abs(f) ** n_grow for f in factors]},
        )
    )
    return rows
