"""``TrainConfig``: every setting of ``psld train``, checked once, round-tripping to JSON."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`psld.training.train` (defaults: the built-in ``fashion-mnist`` model).

    The UNet is a diffusers ``UNet2DModel`` with ``block_out_channels`` levels, ``layers_per_block``
    ResNet blocks per level and self-attention at the coarsest level only. The noise schedule is Stable
    Diffusion's (``scaled_linear``, beta 0.00085 to 0.012, 1000 steps), epsilon prediction. The learning
    rate warms up linearly for ``warmup_steps`` and then follows a cosine decay to 0 at ``steps``;
    ``ema_decay`` is the EMA coefficient (with the usual ``(1 + n) / (10 + n)`` warm-up).
    """

    size: int = 64
    steps: int = 6000
    batch_size: int = 128
    learning_rate: float = 1e-3
    warmup_steps: int = 200
    weight_decay: float = 0.01
    ema_decay: float = 0.999
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    checkpoint_every: int = 500
    seed: int = 0
    bf16: bool = False
    max_images: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(int(c) for c in self.block_out_channels))
        ints = {
            "size": 8,
            "steps": 1,
            "batch_size": 1,
            "warmup_steps": 0,
            "layers_per_block": 1,
            "checkpoint_every": 1,
        }
        for name, low in ints.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.size % 8:
            raise ValueError(f"size must be a multiple of 8 (the autoencoder's factor), got {self.size}")
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images < 1):
            raise ValueError(f"max_images must be a positive integer or None, got {self.max_images!r}")
        for name in ("learning_rate", "weight_decay", "ema_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.learning_rate == 0:
            raise ValueError("learning_rate must be > 0")
        if self.ema_decay >= 1:
            raise ValueError(f"ema_decay must be in [0, 1), got {self.ema_decay!r}")
        if not self.block_out_channels or any(c < 8 or c % 8 for c in self.block_out_channels):
            raise ValueError(
                f"block_out_channels must be multiples of 8 (GroupNorm groups), got {self.block_out_channels}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["block_out_channels"] = list(self.block_out_channels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}")
        return cls(**data)
