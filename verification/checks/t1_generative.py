"""T1 (docs/theory.md T1, §5.6): generative modelling in latent space reproduces the data law ``N(0, S S^T)``.

* **Two-state denoiser.** With ``z1 = sqrt(1 - beta) z0 + sqrt(beta) eps`` the least-squares linear
  denoiser fitted on ``n`` pairs (:func:`linear_model.fit_linear_denoiser`) approaches
  ``phi* = sqrt(1 - beta) I_k`` (:func:`linear_model.optimal_latent_denoiser`); its Frobenius error has rms
  ``k sqrt(beta/(n - k - 1))`` (regression residual variance ``beta``, inverse-Wishart mean of
  ``(Z1^T Z1)^{-1}``).
* **Two-state generator through the core.** The fitted ``phi_hat`` becomes a one-step latent prior
  (:class:`LinearDenoiserPrior`); one :func:`psld.sample` step (DDIM, ``omega = 0``) returns
  ``phi_hat z1``. The normalised generator ``D(phi_hat z1/sqrt(1 - beta))`` has law
  ``N(0, S Phi S^T)`` with ``Phi = phi_hat phi_hat^T/(1 - beta)``, i.e. the data law up to the fit error.
* **T-step chains.** :func:`psld.sample` with ``omega = 0`` on the exact prior
  (:class:`linear_model.GaussianLatentPrior`), DDPM (``eta = 1``, every step) and DDIM (``eta = 0``), gives
  samples whose covariance matches ``S S^T``. The finite-T chain is exactly Gaussian with covariance
  ``v_0 S S^T``, ``v_0`` from the unguided T7 recursion (:func:`linear_model.eigen_recursion` with
  ``h = 0``): 0.9911 for DDPM and 0.9963 for DDIM on the default schedule, a discretisation bias far below
  the sampling noise.
* **Negative case.** The unnormalised generator ``D(phi_hat z1)`` has covariance ``(1 - beta) S S^T``:
  it misses by ``beta sqrt(k)`` and fails the same test.

Covariances are second moments ``X^T X/n`` of pixel samples (the mean is 0); for ``N(0, v I_k)`` in an
orthonormal subspace, ``||C_hat - v S S^T||_F`` has rms ``v sqrt(k(k + 1)/n)``. Tolerances are 4 such rms
(the "c k/sqrt(n)" of docs/theory.md T1 with c = 4 sqrt((k + 1)/k) <= 4 sqrt(2)).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

import linear_model as lm
from psld.config import PSLDConfig
from psld.operators import MatrixOperator
from psld.sampler import sample
from verification.checks.t3_contraction import F64, gen, single_threaded
from verification.result import CheckResult, level_size, register

NAME = "t1-generative"
#: rows per psld.sample call (keeps each tensor small; chunks use consecutive seeds)
CHUNK = 4096


class LinearDenoiserPrior:
    """A ``LatentPrior`` whose Tweedie estimate at every timestep is the linear map ``z -> phi z``:
    ``eps(z, t) = (z - sqrt(abar_t) phi z)/sqrt(1 - abar_t)``, so the core's ``z0_hat = phi z``."""

    def __init__(self, phi: Tensor, alphas_cumprod: Tensor):
        self.phi = torch.as_tensor(phi, dtype=F64)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=F64)

    def eps(self, z: Tensor, t: int) -> Tensor:
        a = float(self.alphas_cumprod[int(t)])
        return (z - a**0.5 * z @ self.phi.to(z).T) / (1 - a) ** 0.5


def fit_two_state(k: int, beta: float, n: int, seed: int | torch.Generator = 0) -> dict:
    """Fit ``phi_hat`` on ``n`` pairs ``(z0, z1)``; return it with ``error = ||phi_hat - phi*||_F`` and
    the predicted rms ``k sqrt(beta/(n - k - 1))``."""
    g = gen(seed)
    z0 = torch.randn(n, k, generator=g, dtype=F64)
    z1 = (1 - beta) ** 0.5 * z0 + beta**0.5 * torch.randn(n, k, generator=g, dtype=F64)
    phi_hat = lm.fit_linear_denoiser(z0, z1)
    phi_star = lm.optimal_latent_denoiser(beta, torch.eye(k, dtype=F64))
    return {
        "phi_hat": phi_hat,
        "phi_star": phi_star,
        "error": float((phi_hat - phi_star).norm()),
        "rms": k * math.sqrt(beta / (n - k - 1)),
    }


def _null_problem(d: int, rows: int) -> tuple[MatrixOperator, Tensor]:
    """An operator with no information (``A = 0``, one row) and its zero measurements: unguided sampling."""
    return MatrixOperator(torch.zeros(1, d, dtype=F64)), torch.zeros(rows, 1, dtype=F64)


def two_state_samples(S: Tensor, phi: Tensor, beta: float, n: int, seed: int | torch.Generator = 0) -> Tensor:
    """``n`` latents ``phi z1`` from one unguided :func:`psld.sample` step with :class:`LinearDenoiserPrior`
    (``abar = 1 - beta``, DDIM; the last step goes to ``abar = 1``, so it returns the Tweedie estimate)."""
    g = gen(seed)
    ae = lm.SubspaceAutoencoder(S)
    prior = LinearDenoiserPrior(phi, torch.tensor([1 - beta], dtype=F64))
    cfg = PSLDConfig(method="ldps", num_steps=1, eta=0.0, omega=0.0, gamma=0.0, loss="squared")
    out = []
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        op, y = _null_problem(S.shape[0], m)
        out.append(
            sample(
                prior, ae.encoder, ae.decoder, op, y, config=cfg, generator=g, latent_shape=(S.shape[1],)
            ).z
        )
    return torch.cat(out)


def chain_samples(
    S: Tensor, n: int, *, eta: float, seed: int | torch.Generator = 0, alphas_cumprod=None
) -> Tensor:
    """``n`` pixel samples of the unguided T-step chain (every training step) on the exact ``N(0, I)``
    latent prior, through :func:`psld.sample` (``eta = 1``: ancestral DDPM; ``eta = 0``: DDIM)."""
    g = gen(seed)
    k = S.shape[1]
    prior = lm.GaussianLatentPrior(k=k, alphas_cumprod=alphas_cumprod)
    T = prior.alphas_cumprod.numel()
    ae = lm.SubspaceAutoencoder(S)
    cfg = PSLDConfig(method="ldps", num_steps=T, eta=eta, omega=0.0, gamma=0.0, loss="squared")
    out = []
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        op, y = _null_problem(S.shape[0], m)
        out.append(sample(prior, ae.encoder, ae.decoder, op, y, config=cfg, generator=g, latent_shape=(k,)).x)
    return torch.cat(out)


def chain_variance(eta: float, alphas_cumprod=None) -> float:
    """Exact per-direction variance ``v_0`` of the unguided finite-T chain (T7 recursion with ``h = 0``)."""
    ac = lm.GaussianLatentPrior(k=1, alphas_cumprod=alphas_cumprod).alphas_cumprod
    zero = torch.zeros(1, dtype=F64)
    _, v = lm.eigen_recursion(zero, zero, ac, 0.0, 0.0, ddpm=eta == 1.0)
    return float(v[0])


def cov_error(x: Tensor, S: Tensor, scale: float = 1.0) -> float:
    """``||X^T X/n - scale S S^T||_F`` for pixel samples ``x`` ``[n, d]``."""
    return float((x.T @ x / x.shape[0] - scale * S @ S.T).norm())


def cov_rms(k: int, n: int, v: float = 1.0) -> float:
    """rms of ``||C_hat - v S S^T||_F`` for ``n`` draws of ``N(0, v S S^T)`` (orthonormal ``S``)."""
    return v * math.sqrt(k * (k + 1) / n)


def generator_law(phi: Tensor, beta: float, normalised: bool) -> Tensor:
    """Latent covariance of the two-state generator: ``phi phi^T/(1 - beta)`` (normalised) or
    ``phi phi^T``."""
    cov = phi @ phi.T
    return cov / (1 - beta) if normalised else cov


@register(NAME, "T1: latent generative modelling reproduces the data law N(0, S S^T)")
@single_threaded
def check(*, level: str = "default", seed: int = 0) -> list[CheckResult]:
    d, k = level_size(level, (16, 4), (64, 8), (64, 8))
    n_fit, n_gen, n_chain = level_size(
        level, (40_000, 10_000, 2_000), (200_000, 40_000, 8_000), (1_000_000, 200_000, 40_000)
    )
    beta = 0.5
    g = gen(seed)
    S = lm.random_subspace(d, k, seed=g)
    P = S @ S.T
    rows: list[CheckResult] = []

    fit = fit_two_state(k, beta, n_fit, g)
    rows.append(
        CheckResult(
            NAME,
            f"two-state least-squares denoiser (beta = {beta}, n = {n_fit} pairs) -> "
            "phi* = sqrt(1 - beta) I_k",
            fit["rms"],
            fit["error"],
            "||phi_hat - phi*||_F <= 4 k sqrt(beta/(n - k - 1)) (4 rms)",
            bool(fit["error"] <= 4 * fit["rms"]),
            {"k": k, "beta": beta, "n": n_fit},
        )
    )

    z = two_state_samples(S, fit["phi_hat"], beta, n_gen, g)
    decoder = lm.SubspaceAutoencoder(S).decoder
    x_norm = decoder(z / (1 - beta) ** 0.5)
    x_raw = decoder(z)
    eye = torch.eye(k, dtype=F64)
    law_norm = generator_law(fit["phi_hat"], beta, True)
    law_dev = float((law_norm - eye).norm())
    tol_norm = law_dev + 4 * cov_rms(k, n_gen, float(torch.linalg.eigvalsh(law_norm)[-1]))
    err_norm = cov_error(x_norm, S)
    rows.append(
        CheckResult(
            NAME,
            "normalised two-state generator D(phi_hat z1/sqrt(1 - beta)) (one psld.sample step with the "
            "fitted "
            "denoiser) samples N(0, S S^T)",
            cov_rms(k, n_gen),
            err_norm,
            "||Cov - S S^T||_F <= ||Phi - I||_F (fit error of the fitted law) + 4 rms",
            bool(err_norm <= tol_norm),
            {"n": n_gen, "fitted_law_deviation": law_dev, "tolerance": tol_norm},
        )
    )

    v_ddpm, v_ddim = chain_variance(1.0), chain_variance(0.0)
    for eta, v0, label in (
        (1.0, v_ddpm, "DDPM (eta = 1, 1000 steps)"),
        (0.0, v_ddim, "DDIM (eta = 0, 1000 steps)"),
    ):
        x = chain_samples(S, n_chain, eta=eta, seed=g)
        err = cov_error(x, S)
        err_v0 = cov_error(x, S, v0)
        tol = 4 * cov_rms(k, n_chain, max(v0, 1.0)) + math.sqrt(k) * abs(1 - v0)
        rows.append(
            CheckResult(
                NAME,
                f"{label} chain of psld.sample (omega = 0, exact N(0, I) prior, n = {n_chain}) samples "
                "N(0, S S^T)",
                cov_rms(k, n_chain),
                err,
                "||Cov - S S^T||_F <= 4 rms + sqrt(k)|1 - v0| (v0: exact finite-T variance)",
                bool(err <= tol),
                {
                    "v0": v0,
                    "error_vs_v0_law": err_v0,
                    "tolerance": tol,
                    "off_subspace": float(((x @ (torch.eye(d, dtype=F64) - P)).norm(dim=1)).max()),
                    "theory_scale_d/sqrt(n)": d / math.sqrt(n_chain),
                },
            )
        )

    law_raw = generator_law(fit["phi_hat"], beta, False)
    pred_raw = beta * math.sqrt(k)
    err_raw = cov_error(x_raw, S)
    tol_raw = float((law_raw - (1 - beta) * eye).norm()) + 4 * cov_rms(
        k, n_gen, float(torch.linalg.eigvalsh(law_raw)[-1])
    )
    rows.append(
        CheckResult(
            NAME,
            "negative: the unnormalised generator D(phi_hat z1) has covariance (1 - beta) S S^T and fails "
            "the "
            "same test by beta sqrt(k)",
            pred_raw,
            err_raw,
            f"> the normalised tolerance ({tol_norm:.3g}) and within {tol_raw:.3g} of beta sqrt(k)",
            bool(err_raw > tol_norm and abs(err_raw - pred_raw) <= tol_raw),
            {"beta": beta, "k": k},
        )
    )
    return rows
