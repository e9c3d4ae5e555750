"""``PinvNotConvergedWarning`` points at the caller's line (not at psld) and fires once per sampling run."""

from __future__ import annotations

import warnings

import pytest
import torch

import psld.operators.base as base
from psld.config import PSLDConfig
from psld.operators.base import LinearOperator, PinvNotConvergedWarning
from psld.protocols import Identity
from psld.sampler import sample
from psld.schedule import make_alphas_cumprod


class Dense(LinearOperator):
    """A dense operator on vectors with the generic (CGLS) pseudo-inverse."""

    def __init__(self, A: torch.Tensor):
        super().__init__((A.shape[1],), (A.shape[0],))
        self.A = A

    def forward(self, x):
        return x @ self.A.T

    def adjoint(self, y):
        return y @ self.A


class StdNormalPrior:
    def __init__(self, T: int = 100):
        self.alphas_cumprod = make_alphas_cumprod("linear", T, beta_start=1e-3, beta_end=0.1)

    def eps(self, z, t):
        return (1 - float(self.alphas_cumprod[t])) ** 0.5 * z


@pytest.fixture
def capped_cgls(monkeypatch):
    """CGLS stopped after 2 iterations, so that every pinv of the ill-conditioned operator warns."""
    real = base.cgls
    monkeypatch.setattr(
        base, "cgls", lambda f, a, y, tol=None, max_iter=500: real(f, a, y, tol=tol, max_iter=2)
    )


def _problem():
    g = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    A = (torch.logspace(0, -3, 12, dtype=torch.float64)[:, None] * u)[:8]  # 8 x 12, cond 1e3
    y = torch.randn(2, 8, generator=g, dtype=torch.float64)
    return Dense(A), y


def _run(op, y, steps: int = 6):
    cfg = PSLDConfig(num_steps=steps, glue="pinv", gamma=0.1, omega=0.1)
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    return sample(StdNormalPrior(), Identity(), Identity(), op, y, config=cfg, generator=gens)


def test_once_per_run_at_the_callers_line(capped_cgls):
    op, y = _problem()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(op, y)
        _run(op, y)
    pinv = [w for w in caught if issubclass(w.category, PinvNotConvergedWarning)]
    assert len(pinv) == 2, [str(w.message) for w in pinv]  # one per run (6 steps each), not one per step
    assert {w.filename for w in pinv} == {__file__}, [w.filename for w in pinv]
    assert "max_iter" in str(pinv[0].message)


def test_direct_pinv_points_at_the_caller(capped_cgls):
    op, y = _problem()
    with pytest.warns(PinvNotConvergedWarning) as record:
        op.pinv(y)
    assert record[0].filename == __file__


def test_converged_runs_stay_silent():
    op, y = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("error", PinvNotConvergedWarning)
        _run(op, y, steps=3)
