"""Every method of the registry keeps the core's guarantees: a batch equals its singles, explicit
generators make runs reproducible (and seeds matter), divergence is reported, callbacks and progress bars
run, and configurations round-trip through JSON. Core methods are unchanged (tests/test_sampler.py)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from psld.config import PSLDConfig
from psld.hooks import MethodConfig
from psld.methods import ALL_METHODS, REGISTRY, config_class, config_from_dict, method_config
from psld.operators import MaskOperator, MatrixOperator
from psld.sampler import DivergenceError, DivergenceWarning, sample
from psld.schedule import make_alphas_cumprod

K, D = 4, 12


class MLPPrior(torch.nn.Module):
    """A small random nonlinear eps-network (float64), differentiable in z."""

    def __init__(self, k: int, T: int = 100, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(k + 1, 16, generator=g, dtype=torch.float64) / 3)
        self.w2 = torch.nn.Parameter(torch.randn(16, k, generator=g, dtype=torch.float64) / 4)
        self.alphas_cumprod = make_alphas_cumprod("linear", T, beta_start=1e-3, beta_end=0.1)
        self.requires_grad_(False)

    def eps(self, z, t):
        tt = torch.full((z.shape[0], 1), t / 100.0, dtype=z.dtype)
        return torch.tanh(torch.cat([z, tt], 1) @ self.w1) @ self.w2


class MLPAutoencoder:
    """Toy nonlinear encoder/decoder pair (K <-> D)."""

    def __init__(self, seed: int = 1):
        g = torch.Generator().manual_seed(seed)
        self.Dm = torch.randn(K, D, generator=g, dtype=torch.float64) / K**0.5
        self.Em = torch.randn(D, K, generator=g, dtype=torch.float64) / D**0.5

    def decoder(self, z):
        return torch.tanh(z @ self.Dm) + 0.1 * z.sum(1, keepdim=True)

    def encoder(self, x):
        return torch.sin(x @ self.Em)


#: small settings per method so each test runs in well under a second; every hook still fires
FAST = {
    "psld": dict(num_steps=8, omega=0.3, gamma=0.05, eta=0.5, noisy_prediction=True, encode="sample"),
    "gml": dict(num_steps=8, omega=0.3, gamma=0.05, eta=0.5),
    "ldps": dict(num_steps=8, omega=0.3, eta=0.5),
    "dps": dict(num_steps=8, omega=0.3, eta=0.5),
    "resample": dict(num_steps=8, every=2, splits=2, pixel_iters=3, latent_iters=3, eta=0.3),
    "mpgd": dict(num_steps=8, omega=0.3, project=True, project_start=0.0, project_end=1.0),
    "stsl": dict(num_steps=8, omega=0.3, gamma=0.05, inner_steps=2, probes=2),
    "daps": dict(num_steps=6, langevin_steps=4, lr=1e-3, tau=0.3, ode_steps=2),
    "diffpir": dict(num_steps=8, zeta=0.5, sigma_n=0.1, cg_iters=5),
}


def _problem(B: int = 3, seed: int = 0, dense: bool = True):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(8, D, generator=g, dtype=torch.float64) / 8**0.5
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    op = MatrixOperator(A)
    return op, op.forward(x)


def _gens(B: int, seed: int = 0):
    return [torch.Generator().manual_seed(seed + i) for i in range(B)]


def _run(method: str, y, op, generator, **kw):
    prior = MLPPrior(D if method == "dps" else K)
    ae = MLPAutoencoder()
    cfg = method_config(method, **FAST[method])
    return sample(prior, ae.encoder, ae.decoder, op, y, config=cfg, generator=generator, **kw)


def test_registry_lists_every_method_once():
    assert set(ALL_METHODS) == {"psld", "gml", "ldps", "dps", "resample", "mpgd", "stsl", "daps", "diffpir"}
    assert len(ALL_METHODS) == len(set(ALL_METHODS))
    for name, cls in REGISTRY.items():
        assert issubclass(cls, MethodConfig) and cls().method == name
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        config_class("nope")


@pytest.mark.parametrize("method", ALL_METHODS)
def test_config_round_trips_through_json(method):
    cfg = method_config(method, **FAST[method])
    text = json.dumps(cfg.to_dict())
    back = config_from_dict(json.loads(text))
    assert back == cfg and type(back) is type(cfg)
    assert json.loads(text)["method"] == method


def test_from_dict_rejects_unknown_fields_and_wrong_method():
    data = method_config("mpgd").to_dict()
    with pytest.raises(ValueError, match="unknown config field.*lam"):
        config_from_dict({**data, "lam": 1.0})
    with pytest.raises(ValueError, match="method must be 'mpgd'"):
        REGISTRY["mpgd"](method="daps")
    with pytest.raises(ValueError, match="method must be one of"):
        PSLDConfig(method="mpgd")


@pytest.mark.parametrize(
    "method, field, value, message",
    [
        ("daps", "langevin_steps", 0, "langevin_steps must be a positive int, got 0"),
        ("daps", "ode_steps", 1.0, "ode_steps must be a positive int, got 1.0"),
        ("daps", "grad_clip", -0.5, "grad_clip must be a finite number >= 0, got -0.5"),
        ("daps", "tau", 0.0, "tau must be a finite positive number, got 0.0"),
        ("resample", "patience", -1, "patience must be a non-negative int, got -1"),
        ("resample", "tol", float("inf"), "tol must be a finite number >= 0, got inf"),
        ("resample", "latent_lr", float("nan"), "latent_lr must be a finite positive number, got nan"),
        ("stsl", "probes", 0, "probes must be a positive int, got 0"),
        ("stsl", "fd_delta", -1e-3, "fd_delta must be a finite positive number, got -0.001"),
        ("diffpir", "cg_iters", 2.5, "cg_iters must be a positive int, got 2.5"),
        ("diffpir", "lam", 0.0, "lam must be a finite positive number, got 0.0"),
        ("diffpir", "zeta", 1.5, "zeta must lie in [0, 1], got 1.5"),
    ],
)
def test_bad_method_settings_are_refused_naming_the_field(method, field, value, message):
    with pytest.raises(ValueError) as info:
        REGISTRY[method](**{field: value})
    assert str(info.value) == message
    with pytest.raises(ValueError, match="model_t_offset must be a non-negative int, got -1"):
        PSLDConfig(model_t_offset=-1)


def test_method_config_takes_only_the_model_switches_from_a_base():
    base = PSLDConfig.preset("sr4").replace(num_steps=17, steps_offset=1, timestep_spacing="trailing")
    cfg = method_config("diffpir", base, zeta=0.3)
    assert (cfg.steps_offset, cfg.timestep_spacing, cfg.zeta) == (1, "trailing", 0.3)
    assert cfg.num_steps == REGISTRY["diffpir"]().num_steps  # the method's own default, not psld's
    assert method_config("gml", base).replace(method="psld") == base


@pytest.mark.parametrize("method", ALL_METHODS)
def test_batch_equals_singles(method):
    op, y = _problem(B=3)
    batch = _run(method, y, op, _gens(3))
    for b in range(3):
        one = _run(method, y[b : b + 1], op, _gens(1, seed=b))
        torch.testing.assert_close(batch.z[b : b + 1], one.z, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(batch.losses["measurement"][:, b : b + 1], one.losses["measurement"])


@pytest.mark.parametrize("method", ALL_METHODS)
def test_seed_reproducible_and_seed_sensitive(method):
    op, y = _problem(B=2)
    run = lambda s: _run(method, y, op, torch.Generator().manual_seed(s))  # noqa: E731
    a, b, c = run(3), run(3), run(4)
    assert torch.equal(a.z, b.z) and torch.equal(a.x, b.x)
    assert not torch.allclose(a.z, c.z)
    meas = a.losses["measurement"]
    assert meas.shape[1] == 2 and bool(torch.isfinite(meas).all()) and bool((meas[-1] > 0).all())


@pytest.mark.parametrize("method", ALL_METHODS)
def test_nan_latent_from_a_callback_raises_naming_the_step(method):
    op, y = _problem(B=2)
    calls = []

    def poison(i, t, state):
        calls.append(i)
        assert set(state) == {"latents", "z0", "x0"}
        return {"latents": state["latents"] * float("nan")} if i == 2 else None

    with pytest.raises(DivergenceError, match="first at step 2 of"):
        _run(method, y, op, _gens(2), callback=poison)
    assert calls[:3] == [0, 1, 2]


@pytest.mark.parametrize("method", ["resample", "mpgd", "stsl", "daps"])
def test_huge_step_sizes_are_reported_naming_the_method(method):
    """Non-finite runs raise; finite runs far off the prior's scale warn (the core's rule, psld.sampler)."""
    op, y = _problem(B=2)
    huge = {"resample": dict(omega=1e200), "mpgd": dict(omega=1e200), "stsl": dict(omega=1e200)}
    huge["daps"] = dict(lr=1e100, tau=1e-3)
    cfg = method_config(method, **{**FAST[method], **huge[method]})
    ae = MLPAutoencoder()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DivergenceWarning)
        with pytest.raises((DivergenceError, DivergenceWarning), match=f"method='{method}'"):
            sample(MLPPrior(K), ae.encoder, ae.decoder, op, y, config=cfg, generator=_gens(2))


@pytest.mark.parametrize("method", list(REGISTRY))
def test_progress_bar_names_the_method(method, capsys):
    op, y = _problem(B=1)
    out = _run(method, y, op, _gens(1), progress=True)
    assert torch.isfinite(out.x).all()
    assert f"{method} sampling" in capsys.readouterr().err


def test_diffpir_closed_form_prox_used_for_masks_and_finite():
    """A mask has orthonormal rows, so DiffPIR takes the closed form (no CG iterations needed)."""
    op = MaskOperator(torch.tensor([[1.0, 0.0, 1.0, 1.0]]), (3, 1, 4))
    x = torch.randn(2, 3, 1, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    y = op.forward(x)
    prior = MLPPrior(12)
    flat = lambda v: v.reshape(v.shape[0], 12)  # noqa: E731
    unflat = lambda v: v.reshape(v.shape[0], 3, 1, 4)  # noqa: E731
    cfg = method_config("diffpir", num_steps=6, cg_iters=1)
    out = sample(prior, flat, unflat, op, y, config=cfg, generator=_gens(2))
    assert torch.isfinite(out.z).all()


def test_adam_early_stopping_is_per_sample():
    """ReSample's optimiser: a sample that reaches ``tol`` freezes, the others go on; a batch equals its
    singles; on a quadratic it converges to the minimiser."""
    from psld.methods.common import adam

    target = torch.tensor([[0.0, 0.0], [3.0, -2.0]], dtype=torch.float64)
    start = torch.tensor([[1e-3, 0.0], [0.0, 0.0]], dtype=torch.float64)

    def run(rows):
        fn = lambda z: (z - target[rows]).pow(2).sum(1)  # noqa: E731
        return adam(fn, start[rows].clone(), 3000, 0.05, tol=1e-4)

    z, value = run([0, 1])
    assert torch.equal(z[0], start[0])  # already below tol: never moved
    assert float(value[1]) < 1e-4 and torch.allclose(z[1], target[1], atol=1e-2)
    for b in (0, 1):
        torch.testing.assert_close(run([b])[0], z[b : b + 1], rtol=0, atol=0)


#: settings under which each method is expected to work on the 8-d linear-Gaussian problem below
LINEAR = {
    "resample": dict(num_steps=50, every=5),
    "mpgd": dict(num_steps=50, omega=0.2),
    "stsl": dict(num_steps=50, omega=0.2),
    "daps": dict(num_steps=20, langevin_steps=50, lr=1e-3, tau=0.1),
    "diffpir": dict(num_steps=50, sigma_n=0.05, lam=1.0),
}


@pytest.mark.parametrize("method", list(REGISTRY))
def test_each_method_explains_the_measurement_better_than_the_unconditional_chain(method):
    """Linear-Gaussian model (exact prior, x = S z, y = A x with A 3x8): with the same generators, the
    residual ||y - A x|| of every sample falls below the unguided DDIM sample's, by half on average."""
    from linear_model import GaussianLatentPrior, SubspaceAutoencoder

    ae, prior = SubspaceAutoencoder(d=8, k=4, seed=0), GaussianLatentPrior(k=4)
    g = torch.Generator().manual_seed(0)
    op = MatrixOperator(torch.randn(3, 8, generator=g, dtype=torch.float64))
    y = op.forward(ae.decode(torch.randn(6, 4, generator=g, dtype=torch.float64)))
    unguided = method_config("ldps", num_steps=50, omega=0.0)
    base = sample(prior, ae.encode, ae.decode, op, y, config=unguided, generator=_gens(6))
    out = sample(
        prior, ae.encode, ae.decode, op, y, config=method_config(method, **LINEAR[method]), generator=_gens(6)
    )
    ratio = (y - op.forward(out.x)).norm(dim=1) / (y - op.forward(base.x)).norm(dim=1)
    assert bool((ratio < 1).all()) and float(ratio.mean()) < 0.5, ratio.tolist()
