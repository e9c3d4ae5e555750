"""Measurement noise models.

``sigma`` is in the same units as the signal it is added to. The sampler core works with images in
[-1, 1], so ``sigma = 0.05`` there (the official PSLD setting) is 0.025 in [0, 1] image units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor

from psld.random import GeneratorLike, randn_like_batch


@dataclass(frozen=True)
class GaussianNoise:
    """Additive white Gaussian noise ``y + sigma * n`` with ``n ~ N(0, I)``.

    ``generator`` is one ``torch.Generator``, a list with one generator per batch row (diffusers style: row
    ``b`` is drawn from ``generator[b]``, so a batch equals the stacked single draws), or ``None`` for
    torch's default generator. With ``sigma == 0`` the input is returned unchanged (as a new tensor) and no
    random numbers are drawn.

    >>> import torch
    >>> noise = GaussianNoise(0.0)
    >>> bool(torch.equal(noise(torch.ones(2, 3)), torch.ones(2, 3)))
    True
    """

    sigma: float

    def __post_init__(self):
        try:
            sigma = float(self.sigma)
        except (TypeError, ValueError):
            raise ValueError(f"sigma must be a non-negative number, got {self.sigma!r}") from None
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma must be finite and >= 0, got {self.sigma!r}")
        object.__setattr__(self, "sigma", sigma)

    def __call__(self, y: Tensor, generator: GeneratorLike = None) -> Tensor:
        if not isinstance(y, Tensor):
            raise ValueError(f"y must be a torch.Tensor, got {type(y).__name__}")
        if self.sigma == 0:
            return y.clone()
        n = randn_like_batch(y.shape, generator, device=y.device, dtype=y.dtype)
        return y + self.sigma * n
