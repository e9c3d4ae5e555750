"""The three interfaces the sampler core needs: a latent prior, an encoder and a decoder.

The core (:func:`psld.sample`) knows nothing else about models: the linear simulator
(``linear_model``) and the diffusers adapters (``psld.models``) both implement these.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class LatentPrior(Protocol):
    """A diffusion model in latent space, in diffusers semantics.

    ``alphas_cumprod[t]`` is the cumulative product ``abar`` at integer timestep ``t`` (0-based, so
    ``alphas_cumprod[0] < 1``), and ``eps(z_t, t)`` predicts the noise in ``z_t = sqrt(abar) z0 +
    sqrt(1 - abar) eps``. ``eps`` must be differentiable in ``z_t``.
    """

    alphas_cumprod: Tensor

    def eps(self, z_t: Tensor, t: int) -> Tensor: ...


Encoder = Callable[[Tensor], Tensor]
"""Image ``[B, C, H, W]`` in [-1, 1] (or a vector batch) -> latent, already scaled. An encoder may also
offer ``.sample(x, generator)`` for a stochastic (posterior-sample) encoding, used when
``PSLDConfig.encode == "sample"``."""

Decoder = Callable[[Tensor], Tensor]
"""Latent -> image, differentiable."""


class Identity:
    """Identity encoder/decoder, used by pixel-space DPS (``method="dps"``)."""

    def __call__(self, x: Tensor) -> Tensor:
        return x

    def sample(self, x: Tensor, generator: torch.Generator | list | None = None) -> Tensor:
        return x
