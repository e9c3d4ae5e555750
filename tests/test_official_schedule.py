"""``PSLDConfig.official(task, num_steps=S)`` visits exactly the official code's timesteps and alphas.

The expected schedule is derived here from the official rule itself (CompVis ``make_ddim_timesteps``
"uniform" and PSLD's patched ``make_ddim_sampling_parameters``), in numpy, independently of psld."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psld.config import PSLDConfig
from psld.operators import MatrixOperator
from psld.protocols import Identity
from psld.sampler import sample
from psld.schedule import make_alphas_cumprod, official_ddim_schedule

F64 = torch.float64
AC = make_alphas_cumprod("scaled_linear").numpy()  # SD v1's abar, T = 1000
STEPS = [1, 10, 20, 30, 50, 100, 200, 250, 500, 600, 999, 1000]


def official_rule(S: int, ac: np.ndarray = AC):
    """(model timesteps, abar, abar_prev) in sampling order, as the official code builds them; raises
    IndexError (or ValueError for c = 0) exactly where it does."""
    c = len(ac) // S
    ddim_timesteps = np.asarray(list(range(0, len(ac), c))) + 1  # make_ddim_timesteps
    idx = ddim_timesteps - 1 if ddim_timesteps[-1] == ddim_timesteps.shape[0] else ddim_timesteps
    alphas = ac[idx]
    alphas_prev = np.asarray([ac[0]] + ac[idx[:-1]].tolist())
    return ddim_timesteps[::-1], alphas[::-1], alphas_prev[::-1]


class ZeroEpsPrior:
    """eps = 0, so a DDIM step is z' = sqrt(a_prev / a) z: the alphas can be read off the chain."""

    alphas_cumprod = torch.from_numpy(AC)

    def __init__(self):
        self.seen: list[int] = []

    def eps(self, z, t):
        self.seen.append(int(t))
        return torch.zeros_like(z)


def _eye(k: int) -> MatrixOperator:
    return MatrixOperator(torch.eye(k, dtype=F64))


@pytest.mark.parametrize("S", STEPS)
def test_official_preset_visits_the_official_schedule(S):
    seen_ref, a_ref, ap_ref = official_rule(S)
    prior = ZeroEpsPrior()
    cfg = PSLDConfig.official("sr4", num_steps=S).replace(method="ldps", omega=0.0)
    op = _eye(2)
    states = []
    z_init = torch.tensor([[1.0, -2.0]], dtype=F64)

    def record(i, t, state):
        states.append((state["z0"].clone(), state["latents"].clone()))

    sample(
        prior,
        Identity(),
        Identity(),
        op,
        torch.zeros(1, 2, dtype=F64),
        config=cfg,
        latents=z_init,
        callback=record,
    )
    assert prior.seen == seen_ref.tolist()
    z_prev = z_init
    a, ap = [], []
    for z0, z_next in states:  # eps = 0: z0 = z / sqrt(a), z_next = sqrt(a_prev) z0
        a.append(float((z_prev / z0).pow(2).mean()))
        ap.append(float((z_next / z0).pow(2).mean()))
        z_prev = z_next
    np.testing.assert_allclose(a, a_ref, rtol=1e-13, atol=0)
    np.testing.assert_allclose(ap, ap_ref, rtol=1e-13, atol=0)


def test_the_rule_in_numbers():
    """The counts the issue states: 31 steps from 991 at S=30, 1000 steps at 600/999, abar[0] at S=1."""
    sched, seen = official_ddim_schedule(torch.from_numpy(AC), 30)
    assert len(sched) == 31 and int(seen[0]) == 991 and int(sched.timesteps[0]) == 991
    for S in (600, 999, 1000):
        sched, seen = official_ddim_schedule(torch.from_numpy(AC), S)
        assert len(sched) == 1000 and int(seen[0]) == 1000 and int(sched.timesteps[0]) == 999
    sched, seen = official_ddim_schedule(torch.from_numpy(AC), 1)
    assert sched.timesteps.tolist() == [0] and seen.tolist() == [1]
    assert float(sched.alpha[0]) == float(sched.alpha_prev[0]) == AC[0]


def test_crashes_exactly_where_the_official_code_does():
    ac = torch.from_numpy(AC)
    crashing = []
    for S in range(1, 1001):
        try:
            official_rule(S)
            ok = True
        except IndexError:
            ok = False
        if ok:
            sched, seen = official_ddim_schedule(ac, S)
            seen_ref, a_ref, ap_ref = official_rule(S)
            assert seen.tolist() == seen_ref.tolist()
            assert sched.alpha.numpy().tolist() == a_ref.tolist()
            assert sched.alpha_prev.numpy().tolist() == ap_ref.tolist()
        else:
            crashing.append(S)
            with pytest.raises(ValueError, match="crashes the official code"):
                official_ddim_schedule(ac, S)
            with pytest.raises(ValueError, match="crashes the official code"):
                PSLDConfig.official("sr4", num_steps=S)
    assert 300 in crashing and 250 not in crashing and 30 not in crashing
    with pytest.raises(ValueError, match="num_steps"):
        official_ddim_schedule(ac, 1001)


def test_official_spacing_survives_replace():
    """Changing num_steps on an official config keeps the official rule (nothing to re-derive by hand)."""
    prior = ZeroEpsPrior()
    cfg = PSLDConfig.official("deblur-gaussian").replace(num_steps=30, method="ldps", omega=0.0)
    out = sample(
        prior,
        Identity(),
        Identity(),
        _eye(2),
        torch.zeros(1, 2, dtype=F64),
        config=cfg,
        latents=torch.ones(1, 2, dtype=F64),
    )
    assert prior.seen == official_rule(30)[0].tolist()
    assert out.losses["measurement"].shape == (31, 1)
