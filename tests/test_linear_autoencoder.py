"""linear_model.autoencoder: bases, encoders/decoders, sampling, the over-complete latent (T8)."""

import doctest
import importlib

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import linear_model as lm

F64 = torch.float64


@st.composite
def dims(draw, max_d=40):
    k = draw(st.integers(1, 8))
    d = draw(st.integers(k, max_d))
    return d, k, draw(st.integers(0, 2**31 - 1))


@given(dims())
def test_random_subspace_is_sign_fixed_qr_of_the_seeded_gaussian(args):
    d, k, seed = args
    S = lm.random_subspace(d, k, seed=seed)
    G = torch.randn((d, k), generator=torch.Generator().manual_seed(seed), dtype=F64)
    R = S.T @ G  # G = S R with R upper triangular, positive diagonal
    assert torch.allclose(S.T @ S, torch.eye(k, dtype=F64), atol=1e-12)
    assert torch.allclose(S @ R, G, atol=1e-10)
    assert torch.allclose(torch.tril(R, -1), torch.zeros_like(R), atol=1e-10)
    assert bool((torch.diagonal(R) > 0).all())
    assert torch.equal(S, lm.random_subspace(d, k, seed=seed))


@given(dims())
def test_orthonormal_autoencoder_roundtrips_and_projects(args):
    d, k, seed = args
    ae = lm.SubspaceAutoencoder(d=d, k=k, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    z = torch.randn(5, k, generator=g, dtype=F64)
    x = torch.randn(5, d, generator=g, dtype=F64)
    assert ae.orthonormal and torch.equal(ae.E, ae.S.T)
    assert torch.allclose(ae.encode(ae.decode(z)), z, atol=1e-12)
    assert torch.allclose(ae.decode(ae.encode(x)), x @ ae.P.T, atol=1e-12)
    assert torch.allclose(ae.P @ ae.P, ae.P, atol=1e-12) and torch.allclose(ae.P, ae.P.T, atol=1e-14)
    assert torch.allclose(ae.encoder(x), ae.encode(x)) and torch.allclose(ae.decoder(z), ae.decode(z))
    assert callable(ae.encoder) and callable(ae.decoder)


@given(dims())
def test_general_basis_uses_pseudo_inverse(args):
    d, k, seed = args
    g = torch.Generator().manual_seed(seed)
    S = torch.randn(d, k, generator=g, dtype=F64) + 2.0 * torch.eye(d, k, dtype=F64)
    ae = lm.SubspaceAutoencoder(S)
    S_pinv = torch.linalg.pinv(S)
    assert not ae.orthonormal
    assert torch.allclose(ae.E, S_pinv, atol=1e-9)
    assert torch.allclose(ae.P, S @ S_pinv, atol=1e-9)
    z = torch.randn(3, k, generator=g, dtype=F64)
    assert torch.allclose(ae.encode(ae.decode(z)), z, atol=1e-9)


def test_instance_batch_uses_its_own_basis():
    ae = lm.SubspaceAutoencoder(d=7, k=3, seed=4, batch=5)
    z = torch.randn(5, 2, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    x = ae.decode(z)
    assert x.shape == (5, 2, 7)
    for b in range(5):
        assert torch.allclose(x[b], z[b] @ ae.S[b].T, atol=1e-14)
        assert torch.allclose(ae.encode(x)[b], z[b], atol=1e-12)
    assert not torch.allclose(ae.S[0], ae.S[1])
    z1 = torch.randn(5, 3, dtype=F64)
    assert torch.allclose(ae.decode(z1)[3], ae.S[3] @ z1[3], atol=1e-14)


def test_sample_covariance_matches_s_s_transpose():
    ae = lm.SubspaceAutoencoder(d=6, k=2, seed=1)
    n = 20000
    z0, x0 = ae.sample(n, generator=3)
    assert z0.shape == (n, 2) and x0.shape == (n, 6)
    assert torch.allclose(x0, z0 @ ae.S.T)
    cov = x0.T @ x0 / n
    # entrywise sd of an empirical second moment is <= sqrt(2/n) for unit-variance coordinates
    assert (cov - ae.S @ ae.S.T).abs().max() < 5 * (2 / n) ** 0.5
    mean = torch.tensor([1.0, -2.0], dtype=F64)
    Sig = torch.tensor([[2.0, 0.5], [0.5, 1.0]], dtype=F64)
    z, _ = ae.sample(n, generator=4, mean=mean, cov=Sig)
    assert (z.mean(0) - mean).abs().max() < 5 * (2 / n) ** 0.5
    assert (torch.cov(z.T) - Sig).abs().max() < 5 * (2 * 4 / n) ** 0.5
    # n=None gives one draw per instance
    zb, xb = lm.SubspaceAutoencoder(d=6, k=2, batch=3).sample(generator=0)
    assert zb.shape == (3, 2) and xb.shape == (3, 6)


@given(st.integers(1, 6), st.integers(0, 6), st.integers(0, 1000))
def test_overcomplete_reconstructs_data_but_ed_is_not_identity(k, m, seed):
    d = k + m + 3
    ae = lm.OvercompleteAutoencoder(d=d, k=k, m=m, seed=seed)
    p = k + m
    assert ae.E.shape == (p, d) and ae.D.shape == (d, p) and ae.p == p
    assert torch.allclose(ae.D @ ae.E @ ae.S, ae.S, atol=1e-12)
    ED = ae.E @ ae.D
    expected = torch.block_diag(torch.eye(k, dtype=F64), torch.zeros(m, m, dtype=F64))
    assert torch.allclose(ED, expected, atol=1e-12)
    assert torch.allclose(ae.S.T @ ae.B_x, torch.zeros(k, m, dtype=F64), atol=1e-12)
    if m > 0:
        assert (ED - torch.eye(p, dtype=F64)).abs().max() > 0.5
        cov = ae.leaky_cov(0.1)
        assert torch.equal(torch.diagonal(cov), torch.cat([torch.ones(k), torch.full((m,), 0.1)]).to(F64))


def test_overcomplete_batched_matches_per_instance_construction():
    S = lm.random_subspace(9, 2, seed=0, batch=3)
    ae = lm.OvercompleteAutoencoder(S, m=4, seed=1)
    assert ae.E.shape == (3, 6, 9) and ae.D.shape == (3, 9, 6)
    for b in range(3):
        assert torch.allclose(ae.D[b] @ ae.E[b] @ S[b], S[b], atol=1e-12)


def test_coordinate_basis_selects_columns_of_identity():
    S = lm.coordinate_basis(10, 3, seed=5)
    assert torch.equal(S.T @ S, torch.eye(3, dtype=F64))
    assert torch.equal(S.sum(0), torch.ones(3, dtype=F64))
    assert lm.coordinate_basis(10, 3, seed=5, batch=4).shape == (4, 10, 3)


def test_linear_autoencoder_general_pair():
    S = lm.random_subspace(8, 3, seed=2)
    N = torch.randn(3, 8, dtype=F64) @ (torch.eye(8, dtype=F64) - S @ S.T)  # N S = 0
    ae = lm.LinearAutoencoder(S.T + N, S)
    assert torch.allclose(ae.D @ ae.E @ S, S, atol=1e-12)
    assert ae.p == 3 and ae.d == 8


@pytest.mark.parametrize(
    "module",
    ["autoencoder", "prior", "measurements", "posterior", "predictions", "two_state", "_batch", ""],
)
def test_module_doctests(module):
    mod = importlib.import_module("linear_model" + ("." + module if module else ""))
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_overcomplete_extra_columns_have_unit_scale_by_default():
    """G ~ N(0, scale^2) with scale = 1/sqrt(d): mean squared column norm of B_x is (d - k)/d."""
    d, k, m = 64, 8, 400
    ae = lm.OvercompleteAutoencoder(d=d, k=k, m=m, seed=3)
    msq = float(ae.B_x.pow(2).sum(0).mean())
    sd = (2 * (d - k)) ** 0.5 / d / m**0.5  # chi-square(d - k)/d over m columns
    assert abs(msq - (d - k) / d) < 5 * sd
    big = lm.OvercompleteAutoencoder(d=d, k=k, m=m, seed=3, scale=1.0)
    torch.testing.assert_close(big.B_x, ae.B_x * d**0.5)
    with pytest.raises(ValueError, match="scale"):
        lm.OvercompleteAutoencoder(d=d, k=k, m=2, scale=0.0)
