"""Divergence is reported: a safe norm at zero residual, DivergenceError for non-finite runs, a
DivergenceWarning for latents far outside the prior's scale, and silence for normal runs."""

from __future__ import annotations

import warnings

import pytest
import torch

import psld
from psld.config import PSLDConfig
from psld.operators import MaskOperator, MatrixOperator
from psld.sampler import DRIFT_RMS, DivergenceError, DivergenceWarning, _per_sample, sample
from psld.schedule import make_alphas_cumprod


class StdNormalPrior:
    """Exact N(0, I) prior in pixel space: eps = sqrt(1 - a) z."""

    def __init__(self, T: int = 50):
        self.alphas_cumprod = make_alphas_cumprod("linear", T, beta_start=1e-3, beta_end=0.1)

    def eps(self, z, t):
        return (1 - float(self.alphas_cumprod[t])) ** 0.5 * z


def _dps(omega: float, loss: str = "norm", steps: int = 10, callback=None):
    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 5, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, generator=g, dtype=torch.float64)
    cfg = PSLDConfig(method="dps", num_steps=steps, omega=omega, loss=loss)
    op = MatrixOperator(A)
    return sample(
        StdNormalPrior(), None, None, op, y, config=cfg, generator=g, latent_shape=(5,), callback=callback
    )


def test_norm_is_safe_at_zero_and_unchanged_elsewhere():
    r = torch.tensor([[0.0, 0.0], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    n = _per_sample(r, "norm")
    assert n.tolist() == [0.0, 5.0]
    (grad,) = torch.autograd.grad(n.sum(), r)
    assert grad[0].tolist() == [0.0, 0.0]  # torch's r.norm() gives NaN here
    ref = torch.randn(6, 3, 2, dtype=torch.float64, requires_grad=True)  # nonzero rows: the plain sqrt
    (g_ref,) = torch.autograd.grad(ref.flatten(1).pow(2).sum(1).sqrt().sum(), ref)
    (g_new,) = torch.autograd.grad(_per_sample(ref, "norm").sum(), ref)
    assert torch.equal(g_new, g_ref)
    assert torch.equal(_per_sample(ref, "norm"), ref.flatten(1).pow(2).sum(1).sqrt())


def test_all_zero_mask_sample_stays_finite():
    """Nothing observed: the residual y - A x0 is exactly 0 every step (a NaN gradient before the fix)."""
    op = MaskOperator(torch.zeros(4, 4), (1, 4, 4))
    y = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    cfg = PSLDConfig(method="dps", num_steps=5, omega=1.0)
    out = sample(StdNormalPrior(), None, None, op, y, config=cfg, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(out.z).all() and torch.isfinite(out.losses["measurement"]).all()
    assert out.losses["measurement"].abs().max() == 0


def test_nonfinite_run_raises_naming_step_and_weights():
    finite: list[bool] = []

    def record(i, t, state):
        finite.append(bool(torch.isfinite(state["latents"]).all()))

    with pytest.raises(DivergenceError) as info:
        _dps(omega=1e300, loss="squared", callback=record)
    first = finite.index(False)
    text = str(info.value)
    assert f"step {first} of 10" in text and "omega=1e+300" in text and "gamma=0.1" in text
    assert "\n" not in text
    assert psld.DivergenceError is DivergenceError and psld.DivergenceWarning is DivergenceWarning


def test_latent_replaced_by_nan_in_a_callback_names_that_step():
    def poison(i, t, state):
        return {"latents": state["latents"] * float("nan")} if i == 6 else None

    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 5, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, generator=g, dtype=torch.float64)
    cfg = PSLDConfig(method="dps", num_steps=10, omega=0.1)
    with pytest.raises(DivergenceError, match="first at step 6 of 10"):
        sample(
            StdNormalPrior(), None, None, MatrixOperator(A), y, config=cfg, callback=poison, latent_shape=(5,)
        )


def test_drift_warns_above_the_documented_rms_and_not_below():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        ok = _dps(omega=0.5)
    assert ok.z.pow(2).mean(1).sqrt().max() < DRIFT_RMS
    big = torch.full((2, 5), 2 * DRIFT_RMS, dtype=torch.float64)

    def push(i, t, state):
        return {"latents": big} if i == 9 else None

    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 5, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, generator=g, dtype=torch.float64)
    cfg = PSLDConfig(method="dps", num_steps=10, omega=0.1)
    with pytest.warns(DivergenceWarning, match="far outside the prior's scale"):
        sample(
            StdNormalPrior(), None, None, MatrixOperator(A), y, config=cfg, callback=push, latent_shape=(5,)
        )


@pytest.mark.parametrize("omega", [1e3, 1e6])
def test_large_omega_on_tiny_sd_warns_or_raises(tiny_sd, omega):
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            out = psld.solve(
                img,
                "sr2",
                model=tiny_sd,
                simulate=True,
                seed=0,
                omega=omega,
                num_inference_steps=3,
                progress=False,
                output_type="pt",
            )
        except DivergenceError:
            return
    assert any(issubclass(w.category, DivergenceWarning) for w in caught), out.latents.abs().max()


@pytest.mark.parametrize("task", ["sr2", "inpaint-random", "deblur-gaussian"])
def test_preset_runs_on_tiny_models_do_not_warn(tiny_sd, tiny_ldm, task):
    img = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        for model in (tiny_sd, tiny_ldm):
            psld.solve(img, task, model=model, simulate=True, seed=0, num_inference_steps=4, progress=False)
