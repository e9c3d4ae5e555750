"""FLOP counting that also works under ``torch.autograd.grad`` (the guided step's backward).

``torch.utils.flop_counter.FlopCounterMode`` attributes FLOPs to modules with backward hooks that
``autograd.grad`` does not support; :class:`FlopCounter` keeps only its per-operator formulas
(``flop_registry``: 2 FLOPs per multiply-add for matmul, convolution and attention, forward and
backward) and sums them per operator, with no module tracking.
"""

from __future__ import annotations

from collections import Counter

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

__all__ = ["FlopCounter"]


class FlopCounter(TorchDispatchMode):
    """Context manager: ``with FlopCounter() as c: ...``; then ``c.total`` and ``c.by_op``."""

    def __init__(self) -> None:
        super().__init__()
        self.by_op: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.by_op.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.by_op[func._overloadpacket.__name__] += formula(*args, **kwargs, out_val=out)
        return out
