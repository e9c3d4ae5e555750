"""Explicit random streams: one ``torch.Generator`` or a list of them (one per batch row).

This mirrors diffusers' convention: with a list, row ``b`` of the result is drawn from
``generator[b]`` alone, so a batch of B draws equals B single draws with the same generators.
Nothing here touches or seeds torch's global random state.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

GeneratorLike = torch.Generator | Sequence[torch.Generator] | None


def _gen_device(g: torch.Generator) -> torch.device:
    return torch.device(g.device) if g.device is not None else torch.device("cpu")


def randn_like_batch(
    shape: Sequence[int],
    generator: GeneratorLike = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Standard normal noise of ``shape`` on ``device`` with ``dtype``.

    ``generator`` is ``None`` (torch's default generator: not reproducible unless the caller seeded it),
    one ``torch.Generator`` (the whole tensor is drawn from it), or a list/tuple of generators whose length
    must equal ``shape[0]`` (row ``b`` is drawn from ``generator[b]``). Noise is drawn on each generator's
    own device and then moved to ``device``, so a CPU generator gives the same numbers for any target device.

    >>> import torch
    >>> g = [torch.Generator().manual_seed(s) for s in (0, 1)]
    >>> a = randn_like_batch((2, 3), g, dtype=torch.float64)
    >>> b = randn_like_batch((1, 3), [torch.Generator().manual_seed(1)], dtype=torch.float64)
    >>> bool(torch.equal(a[1:], b))
    True
    """
    shape = tuple(int(s) for s in shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    device = torch.device(device) if device is not None else None
    if generator is None:
        return torch.randn(shape, device=device, dtype=dtype)
    if isinstance(generator, torch.Generator):
        out = torch.randn(shape, generator=generator, device=_gen_device(generator), dtype=dtype)
        return out if device is None else out.to(device)
    if isinstance(generator, (list, tuple)):
        if len(shape) == 0:
            raise ValueError("generator list needs a batch dimension, got shape ()")
        if len(generator) != shape[0]:
            raise ValueError(
                f"generator list must have one generator per batch row: got {len(generator)} "
                f"generators for batch size {shape[0]}"
            )
        rows = []
        for g in generator:
            if not isinstance(g, torch.Generator):
                raise ValueError(f"generator list must hold torch.Generator objects, got {type(g).__name__}")
            r = torch.randn(shape[1:], generator=g, device=_gen_device(g), dtype=dtype)
            rows.append(r if device is None else r.to(device))
        if not rows:
            return torch.empty(shape, device=device, dtype=dtype)
        target = device if device is not None else rows[0].device
        return torch.stack([r.to(target) for r in rows])
    raise ValueError(
        f"generator must be None, a torch.Generator or a list of them, got {type(generator).__name__}"
    )
