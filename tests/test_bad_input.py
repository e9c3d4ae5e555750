"""Bad input at the Python API: non-finite settings, a mask observing nothing, a missing device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import psld
from psld.config import PSLDConfig
from psld.restore import check_device

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.mark.parametrize("field", ["omega", "gamma", "prediction_sigma", "eta"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), -1.0, "1", None, True])
def test_config_rejects_non_finite_and_non_numbers(field, value):
    with pytest.raises(ValueError, match=field):
        PSLDConfig(**{field: value})


def test_config_accepts_finite_weights():
    assert PSLDConfig(omega=1e6, gamma=0.0, eta=1.0).omega == 1e6


def _img():
    return np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)


@pytest.mark.parametrize(
    "kw", [dict(omega=float("inf")), dict(gamma=float("nan")), dict(sigma_y=float("inf"))]
)
def test_solve_rejects_non_finite_numbers(tiny_sd, kw):
    name = next(iter(kw))
    with pytest.raises(ValueError, match=name):
        psld.solve(_img(), "sr2", model=tiny_sd, simulate=True, num_inference_steps=2, progress=False, **kw)


@pytest.mark.parametrize("task", ["inpaint-box", "inpaint-random", "destripe"])
def test_solve_refuses_a_mask_that_observes_no_pixel(tiny_sd, task):
    with pytest.raises(ValueError, match="observes no pixel"):
        psld.solve(
            _img(), task, model=tiny_sd, mask=np.zeros((16, 16)), num_inference_steps=2, progress=False
        )


def test_solve_refuses_an_empty_mask_in_a_batch(tiny_sd):
    masks = [np.ones((16, 16)), np.zeros((16, 16))]
    with pytest.raises(ValueError, match="mask 1 of the batch observes no pixel"):
        psld.solve(
            [_img()] * 2, "inpaint-box", model=tiny_sd, mask=masks, num_inference_steps=2, progress=False
        )


@NO_CUDA
@pytest.mark.parametrize("device", ["cuda", "cuda:0", torch.device("cuda")])
def test_cuda_without_cuda_is_a_clear_value_error(tiny_sd_path, device):
    with pytest.raises(ValueError, match="CUDA is not available"):
        psld.solve(
            _img(), "sr2", model=str(tiny_sd_path), device=device, num_inference_steps=2, progress=False
        )


@pytest.mark.parametrize("device", ["gpu", "cpu:x", 3.5])
def test_unknown_device_names(device):
    with pytest.raises(ValueError, match="device"):
        check_device(device)


def test_cpu_device_accepted():
    assert check_device("cpu") == torch.device("cpu") and check_device(None) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_load_model_on_missing_cuda_is_a_clear_value_error(tiny_sd_path):
    with pytest.raises(ValueError, match="CUDA is not available"):
        psld.load_model(tiny_sd_path, device="cuda")
