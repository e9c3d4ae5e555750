"""The one validation layer of ``psld train`` / :func:`psld.train`: everything is checked before anything
is written or the first image is encoded."""

from __future__ import annotations

import os
from typing import Any

from psld.training.config import TrainConfig
from psld.training.data import ImageSource, resolve_source

__all__ = ["check_train_inputs"]


def check_train_inputs(
    data: str | os.PathLike,
    autoencoder: str | os.PathLike,
    out: str | os.PathLike,
    config: TrainConfig,
    resume: bool,
    export_dtype: str,
) -> tuple[ImageSource, Any, str]:
    """``(source, autoencoder module, its class name)``, or ``ValueError`` with one line."""
    from psld.files import check_writable_folder
    from psld.training.autoencoder import load_autoencoder

    if not isinstance(config, TrainConfig):
        raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
    if export_dtype not in ("fp32", "fp16"):
        raise ValueError(f"export_dtype must be 'fp32' or 'fp16', got {export_dtype!r}")
    check_writable_folder(out)
    if (
        not resume
        and os.path.isdir(out)
        and any(os.path.exists(os.path.join(out, name)) for name in ("model_index.json", "checkpoint"))
    ):
        raise ValueError(
            f"output folder {os.fspath(out)!r} already holds a model or checkpoint; pass --resume"
        )
    source = resolve_source(data, config.size)
    if len(source) == 0:
        raise ValueError(f"training data {os.fspath(data)!r} holds no images")
    vae, cls_name = load_autoencoder(autoencoder)
    return source, vae, cls_name
