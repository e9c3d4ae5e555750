"""``psld.images.pad_to_multiple``: sizes, values, and termination on 1-pixel-high or -wide inputs."""

from __future__ import annotations

import signal
from contextlib import contextmanager

import pytest
import torch

from psld.images import pad_to_multiple


@contextmanager
def _deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block runs longer than ``seconds``."""

    def _raise(signum, frame):
        raise TimeoutError(f"did not finish within {seconds} s")

    old = signal.signal(signal.SIGALRM, _raise)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("h, w", [(1, 5), (5, 1), (1, 1), (1, 8)])
def test_one_pixel_high_or_wide_terminates_and_replicates(h: int, w: int) -> None:
    x = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w)
    with _deadline(5):
        out = pad_to_multiple(x, 8)
    assert tuple(out.shape) == (1, 1, 8, 8)
    assert torch.equal(out[..., :h, :w], x)
    if h == 1:  # a single row can only be repeated
        assert torch.equal(out[..., 7, :w], x[..., 0, :])
    if w == 1:
        assert torch.equal(out[..., :h, 7], x[..., :, 0])


def test_reflect_padding_values_and_repeated_reflection() -> None:
    x = torch.tensor([[[[1.0, 2.0, 3.0]]]]).expand(1, 1, 2, 3).clone()
    x[..., 1, :] += 10
    out = pad_to_multiple(x, 8)
    assert tuple(out.shape) == (1, 1, 8, 8)
    # reflection (edge not repeated): 1 2 3 | 2 1 | 2 3 | 2  (repeated when the padding exceeds the image)
    assert out[0, 0, 0].tolist() == [1.0, 2.0, 3.0, 2.0, 1.0, 2.0, 3.0, 2.0]
    assert out[0, 0, :, 0].tolist() == [1.0, 11.0, 1.0, 11.0, 1.0, 11.0, 1.0, 11.0]


def test_already_a_multiple_is_unchanged() -> None:
    x = torch.rand(2, 3, 16, 24)
    assert torch.equal(pad_to_multiple(x, 8), x)
