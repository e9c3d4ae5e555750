"""Hypothesis strategies and small helpers shared by the theorem test modules."""

from __future__ import annotations

import torch
from hypothesis import strategies as st


@st.composite
def dims(draw, k_min: int = 1, k_max: int = 8, d_max: int = 64):
    """docs/theory.md §6 common strategy, scaled down: ``k``, ``l in [k, 3k]``, ``d in [l + 1, d_max]``."""
    k = draw(st.integers(k_min, k_max))
    l = draw(st.integers(k, 3 * k))
    d = draw(st.integers(l + 1, max(l + 1, d_max)))
    return d, k, l


def gen(seed: int) -> torch.Generator:
    """A seeded CPU generator."""
    return torch.Generator().manual_seed(seed)
