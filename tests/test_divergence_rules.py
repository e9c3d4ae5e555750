"""The divergence rules of :func:`psld.sample`, pinned: a non-finite guiding loss raises even while
the latents stay finite, a loss that guided nothing does not, and the drift warning fires exactly
above ``DRIFT_RMS`` and per sample (not on the batch's pooled rms)."""

from __future__ import annotations

import warnings

import pytest
import torch

from psld.config import PSLDConfig
from psld.operators import MatrixOperator
from psld.sampler import DRIFT_RMS, DivergenceError, DivergenceWarning, sample
from psld.schedule import make_alphas_cumprod


class StdNormalPrior:
    """Exact N(0, I) prior: eps = sqrt(1 - a) z."""

    alphas_cumprod = make_alphas_cumprod("linear", 50, beta_start=1e-3, beta_end=0.1)

    def eps(self, z, t):
        return (1 - float(self.alphas_cumprod[t])) ** 0.5 * z


def _run(y, *, omega=1.0, dtype=torch.float32, callback=None, steps=5, dim=4):
    g = torch.Generator().manual_seed(0)
    op = MatrixOperator(torch.eye(dim, dtype=dtype))
    cfg = PSLDConfig(method="dps", num_steps=steps, omega=omega)
    return sample(
        StdNormalPrior(), None, None, op, y, config=cfg, generator=g, latent_shape=(dim,), callback=callback
    )


def test_a_non_finite_loss_with_finite_latents_raises():
    """float32, |y| = 1e20: ||y - x||^2 overflows to inf, so the loss is inf while its gradient
    (y - x) / inf = 0 leaves every latent finite; the run must still raise."""
    y = torch.full((1, 4), 1e20, dtype=torch.float32)
    latents_finite = []
    with pytest.raises(DivergenceError, match="first at step 0 of 5"):
        _run(y, callback=lambda i, t, s: latents_finite.append(bool(torch.isfinite(s["latents"]).all())))
    assert latents_finite == [True] * 5


def test_a_non_finite_loss_that_guided_nothing_does_not_raise():
    """omega = 0 (and no glue): the same overflowing loss is only logged; the run is fine."""
    out = _run(torch.full((1, 4), 1e20, dtype=torch.float32), omega=0.0)
    assert torch.isfinite(out.z).all() and torch.isinf(out.losses["measurement"]).all()


def _push(rows: list[float], dim: int = 4):
    """A callback setting the final latents so that sample b has rms rows[b]."""
    final = torch.tensor(rows, dtype=torch.float64)[:, None].expand(len(rows), dim).clone()

    def push(i, t, state):
        return {"latents": final.to(state["latents"].dtype)} if i == 4 else None

    return push


def _warned(rows: list[float]) -> bool:
    y = torch.zeros(len(rows), 4, dtype=torch.float64)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(y, omega=0.0, dtype=torch.float64, callback=_push(rows))
    return any(issubclass(w.category, DivergenceWarning) for w in caught)


def test_drift_rule_is_pinned_at_its_threshold():
    assert DRIFT_RMS == 100.0
    assert not _warned([100.0])  # rms exactly at the threshold: no warning
    assert _warned([100.001])  # just above: a warning
    assert not _warned([99.999])


def test_drift_rule_is_per_sample_on_a_batch_whose_rows_differ():
    # pooled rms sqrt((0 + 120^2) / 2) = 84.9 < 100, but sample 1 alone has rms 120: it warns
    assert _warned([0.0, 120.0]) and _warned([120.0, 0.0])
    # pooled rms sqrt((99^2 + 99^2) / 2) = 99: neither sample drifts
    assert not _warned([99.0, 99.0])
    with pytest.warns(DivergenceWarning, match=r"final latent rms 120 is far outside"):
        _run(
            torch.zeros(2, 4, dtype=torch.float64),
            omega=0.0,
            dtype=torch.float64,
            callback=_push([5.0, 120.0]),
        )
