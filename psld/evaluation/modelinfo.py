"""What :func:`psld.evaluate` must know about a model before loading it: read from its config files.

A model folder (or a hub id already in the local cache) holds ``model_index.json`` and one
``config.json`` per component. From them, without loading a weight or importing diffusers:

* ``family``: ``"sd"`` (``UNet2DConditionModel``), ``"ldm"`` (``UNet2DModel`` + autoencoder) or
  ``"pixel"`` (``UNet2DModel``, no autoencoder);
* ``size_multiple = latent_factor * unet_multiple`` with ``latent_factor = 2**(len(blocks) - 1)`` of the
  autoencoder (1 without one) and ``unet_multiple = 2**(len(down_block_types) - 1)`` for
  ``UNet2DModel`` (1 for ``UNet2DConditionModel``), as :func:`psld.models.interop.assemble` computes it;
* the scheduler's ``num_train_timesteps`` and the settings :meth:`LatentModel.scheduler_settings` gives.

So every check that depends on the model (image size, step count) runs before any model loads.
:func:`model_info` returns ``None`` where the files cannot be read (a hub id not cached): those checks
then run right after loading, still before anything is written.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ModelInfo", "model_info", "normalise_source"]

_SPACINGS = ("leading", "trailing", "linspace")


@dataclass(frozen=True)
class ModelInfo:
    """The model facts that the checks of :mod:`psld.evaluation.checks` need."""

    family: str
    size_multiple: int
    num_train_timesteps: int
    steps_offset: int
    set_alpha_to_one: bool
    timestep_spacing: str
    #: the folder's tuned per-task settings (``psld_presets.json``), as ``LatentModel.presets``
    presets: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)

    def scheduler_settings(self) -> dict[str, Any]:
        """As :meth:`psld.LatentModel.scheduler_settings`."""
        return {
            "steps_offset": self.steps_offset,
            "set_alpha_to_one": self.set_alpha_to_one,
            "timestep_spacing": self.timestep_spacing,
        }


def normalise_source(source: str) -> str:
    """A local model path as an absolute path without a trailing separator; a hub id unchanged."""
    if os.path.exists(source):
        return os.path.abspath(source)
    return source


def _from_loaded(model: Any) -> ModelInfo:
    return ModelInfo(
        family=model.family,
        size_multiple=int(model.size_multiple),
        num_train_timesteps=int(model.prior.alphas_cumprod.numel()),
        **model.scheduler_settings(),
        presets=dict(getattr(model, "presets", {})),
    )


def _reader(source: str):
    """``read(relative path) -> dict | None`` for a local folder or a cached hub id."""
    if os.path.isdir(source):

        def read(rel: str) -> dict | None:
            path = Path(source) / rel
            return json.loads(path.read_text()) if path.is_file() else None

        return read

    def read_hub(rel: str) -> dict | None:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(source, rel)
        return json.loads(Path(path).read_text()) if isinstance(path, str) else None

    return read_hub


def _probe(source: str) -> ModelInfo | None:
    read = _reader(source)
    unet = read("unet/config.json")
    sched = read("scheduler/scheduler_config.json")
    if unet is None or sched is None:
        return None
    index = read("model_index.json") or {}
    conditional = unet.get("_class_name") == "UNet2DConditionModel"
    vae = None
    for name in ("vae", "vqvae"):
        if name in index or not index:
            vae = vae or read(f"{name}/config.json")
    if vae is None:
        latent_factor = 1
    else:
        blocks = vae.get("encoder_block_out_channels") or vae.get("block_out_channels") or [0]
        latent_factor = 2 ** (len(blocks) - 1)
    unet_multiple = 1 if conditional else 2 ** (len(unet.get("down_block_types") or [0]) - 1)
    spacing = sched.get("timestep_spacing", "leading")
    return ModelInfo(
        family="sd" if conditional else "ldm" if vae is not None else "pixel",
        size_multiple=latent_factor * unet_multiple,
        num_train_timesteps=int(sched.get("num_train_timesteps", 1000)),
        steps_offset=int(sched.get("steps_offset", 0) or 0),
        set_alpha_to_one=bool(sched.get("set_alpha_to_one", True)),
        timestep_spacing=spacing if spacing in _SPACINGS else "leading",
        presets=read("psld_presets.json") or {},
    )


def model_info(model: Any) -> ModelInfo | None:
    """The :class:`ModelInfo` of a loaded model, a model folder or a cached hub id; ``None`` if unknown."""
    if hasattr(model, "prior") and hasattr(model, "scheduler_settings"):
        return _from_loaded(model)
    from psld.models.builtin import builtin_model_path

    try:
        source = os.fspath(model)
        return _probe(os.fspath(builtin_model_path(source) or source))
    except (OSError, ValueError, TypeError, ImportError):  # unreadable: the loader gives its own error
        return None
