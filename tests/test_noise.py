"""Measurement noise (``psld.noise``) and the shared generator helper (``psld.random``)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from psld.noise import GaussianNoise
from psld.random import randn_like_batch


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


@given(sigma=st.floats(0.0, 10.0), seed=st.integers(0, 2**31 - 1), b=st.integers(1, 4))
def test_same_generator_same_noise_and_batch_equals_singles(sigma, seed, b):
    noise = GaussianNoise(sigma)
    y = torch.randn(b, 3, 5, 4, dtype=torch.float64)
    seeds = [seed + i for i in range(b)]
    batch = noise(y, _gens(*seeds))
    for i, s in enumerate(seeds):
        single = noise(y[i : i + 1], _gens(s))
        assert torch.equal(batch[i : i + 1], single)
    one = noise(y, torch.Generator().manual_seed(seed))
    assert torch.equal(one, noise(y, torch.Generator().manual_seed(seed)))
    if sigma > 0:
        expected = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        torch.testing.assert_close(one, y + sigma * expected)


def test_noise_statistics_and_units():
    y = torch.zeros(4, 3, 64, 64, dtype=torch.float64)
    out = GaussianNoise(0.05)(y, torch.Generator().manual_seed(0))
    n = out.numel()
    assert abs(float(out.std()) - 0.05) < 5 * 0.05 / math.sqrt(2 * n)
    assert abs(float(out.mean())) < 5 * 0.05 / math.sqrt(n)
    assert out.dtype == y.dtype and out.device == y.device


def test_zero_sigma_is_exact_and_draws_nothing():
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    y = torch.randn(2, 3)
    out = GaussianNoise(0)(y, g)
    assert torch.equal(out, y) and out is not y
    assert torch.equal(g.get_state(), state)


def test_dtype_preserved_float32():
    y = torch.ones(2, 3, dtype=torch.float32)
    assert GaussianNoise(0.1)(y, torch.Generator().manual_seed(0)).dtype == torch.float32


@pytest.mark.parametrize("sigma", [-0.1, float("nan"), float("inf"), "abc", None])
def test_bad_sigma_raises(sigma):
    with pytest.raises(ValueError, match="sigma"):
        GaussianNoise(sigma)


def test_noise_is_frozen_and_checks_inputs():
    noise = GaussianNoise(0.1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        noise.sigma = 0.2
    with pytest.raises(ValueError, match="y must be a torch.Tensor"):
        noise([1.0, 2.0])
    with pytest.raises(ValueError, match="one generator per batch row"):
        noise(torch.zeros(3, 2), _gens(0, 1))


def test_randn_like_batch_generator_forms():
    a = randn_like_batch((2, 3), _gens(5, 6), dtype=torch.float64)
    assert a.shape == (2, 3) and a.dtype == torch.float64
    b = randn_like_batch((1, 3), _gens(6), dtype=torch.float64)
    assert torch.equal(a[1:], b)
    c = randn_like_batch((2, 3), torch.Generator().manual_seed(5), device="cpu", dtype=torch.float32)
    assert c.dtype == torch.float32
    assert randn_like_batch((2, 3)).shape == (2, 3)
    assert randn_like_batch((0, 3), []).shape == (0, 3)
    with pytest.raises(ValueError, match="one generator per batch row"):
        randn_like_batch((3, 2), _gens(0))
    with pytest.raises(ValueError, match="torch.Generator"):
        randn_like_batch((1, 2), [0])
    with pytest.raises(ValueError, match="generator must be"):
        randn_like_batch((1, 2), 42)
