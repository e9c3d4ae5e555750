"""psld: posterior sampling with latent diffusion models for linear inverse problems.

``sample``, ``SampleOutput`` and ``PSLDConfig`` (the core) are imported eagerly; ``solve``,
``SolveOutput``, ``load_model``, ``list_tasks``, ``evaluate``, ``train``, ``TrainConfig``,
``keep_freed_memory`` and the ``LatentModel`` class are imported on first use, so ``import psld``
loads neither diffusers nor transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from psld.config import PSLDConfig
from psld.sampler import DivergenceError, DivergenceWarning, SampleOutput, sample

__version__ = "0.1.0"

_LAZY = {
    "solve": ("psld.restore", "solve"),
    "SolveOutput": ("psld.restore", "SolveOutput"),
    "load_model": ("psld.models.loading", "load_model"),
    "LatentModel": ("psld.models.loading", "LatentModel"),
    "list_tasks": ("psld.tasks", "list_tasks"),
    "evaluate": ("psld.evaluation.runner", "evaluate"),
    "keep_freed_memory": ("psld.heap", "keep_freed_memory"),
    "train": ("psld.training.loop", "train"),
    "TrainConfig": ("psld.training.config", "TrainConfig"),
}

__all__ = [
    "PSLDConfig",
    "SampleOutput",
    "sample",
    "DivergenceError",
    "DivergenceWarning",
    "__version__",
    "solve",
    "SolveOutput",
    "load_model",
    "LatentModel",
    "list_tasks",
    "evaluate",
    "keep_freed_memory",
    "train",
    "TrainConfig",
]

if TYPE_CHECKING:  # pragma: no cover
    from psld.evaluation.runner import evaluate
    from psld.heap import keep_freed_memory
    from psld.models.loading import LatentModel, load_model
    from psld.restore import SolveOutput, solve
    from psld.tasks import list_tasks
    from psld.training.config import TrainConfig
    from psld.training.loop import train


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'psld' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
