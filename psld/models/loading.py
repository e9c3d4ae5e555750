"""Load a diffusers latent diffusion model as the prior / encoder / decoder triple of the core.

:func:`load_model` accepts a local diffusers folder (``model_index.json`` plus component subfolders)
or a hub id (fetched by diffusers' ``from_pretrained``; with ``HF_HUB_OFFLINE=1`` only the local cache
is used). Two layouts are recognised:

* **Stable Diffusion** (``family="sd"``): ``unet`` (``UNet2DConditionModel``), ``vae``
  (``AutoencoderKL`` or ``AutoencoderTiny``), ``scheduler``, ``text_encoder`` and ``tokenizer``.
  The safety checker and feature extractor are never loaded.
* **Unconditional LDM** (``family="ldm"``): ``unet`` (``UNet2DModel``), ``vqvae`` (``VQModel``) and
  ``scheduler`` (diffusers' ``LDMPipeline`` layout, e.g. ``CompVis/ldm-celebahq-256``).
* **Pixel-space DDPM** (``family="pixel"``): ``unet`` (``UNet2DModel`` on 3-channel images) and
  ``scheduler`` with no autoencoder (diffusers' ``DDPMPipeline`` layout, e.g. ``google/ddpm-celebahq-256``).
  The encoder and decoder are the identity (:class:`psld.protocols.Identity`), ``latent_factor`` is 1:
  the model for pixel-space DPS (``method="dps"``).

Pipeline objects and components a user already holds are accepted too, without reloading or copying
weights (:mod:`psld.models.interop`); runtime modes (low memory, channels-last) are in
:mod:`psld.models.modes`.

Only the scheduler's *configuration* is used (betas, ``prediction_type``, ``steps_offset``,
``set_alpha_to_one``, ``timestep_spacing``): the DDIM loop is the core's own.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from psld.models import interop
from psld.models.adapters import freeze
from psld.models.interop import assemble, check_conditioning
from psld.models.latent import LatentModel, check_device, default_device, resolve_dtype

__all__ = ["LatentModel", "load_model", "resolve_dtype", "default_device", "check_device"]

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


# ---------------------------------------------------------------------------------------------- loading
class _LoadError(ValueError):
    pass


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]


def _read_index(source: str, local: bool) -> dict:
    if local:
        folder = Path(source)
        index_file = folder / "model_index.json"
        if index_file.is_file():
            try:
                return json.loads(index_file.read_text())
            except (OSError, ValueError) as exc:
                raise _LoadError(
                    f"model folder {source!r} has an unreadable model_index.json ({_one_line(exc)})"
                ) from None
        # a bare folder of components without model_index.json
        if (folder / "unet").is_dir() and (folder / "scheduler").is_dir():
            index = {"unet": ["diffusers", None], "scheduler": ["diffusers", None]}
            for name in ("vae", "vqvae"):
                if (folder / name).is_dir():
                    index[name] = ["diffusers", None]
            for name in ("text_encoder", "tokenizer"):
                if (folder / name).is_dir():
                    index[name] = ["transformers", None]
            return index
        raise _LoadError(
            f"{source!r} is not a diffusers model folder "
            "(no model_index.json, no unet/ and scheduler/ subfolders)"
        )
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(source, "model_index.json")).read_text())
    except Exception as exc:  # hub/network/cache errors of many types
        raise _LoadError(
            f"model {source!r} is not a local folder and could not be fetched from the Hugging Face hub "
            f"(offline and not cached, or no such diffusers model): {_one_line(exc)}"
        ) from None


def num_train_timesteps(source: Any) -> int | None:
    """The scheduler's ``num_train_timesteps`` of a local model folder, read from its JSON without loading
    anything (``None`` for a hub id, a pipeline object or an unreadable folder)."""
    if not isinstance(source, (str, os.PathLike)):
        return None
    path = Path(source) / "scheduler" / "scheduler_config.json"
    try:
        return int(json.loads(path.read_text()).get("num_train_timesteps", 1000))
    except (OSError, ValueError, TypeError, AttributeError):
        return None


def _class_name(index: dict, name: str) -> str | None:
    entry = index.get(name)
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1]:
        return str(entry[1])
    return None


def _component_config(source: str, sub: str) -> dict:
    from diffusers import ConfigMixin

    class _Reader(ConfigMixin):
        config_name = "config.json"  # type: ignore[assignment]

    return dict(_Reader.load_config(source, subfolder=sub))  # type: ignore[arg-type]


def _load_vae(source: str, index: dict, dtype: torch.dtype, vae_dtype: torch.dtype | None):
    """The autoencoder, its class name and dtype (fp32 when half precision and ``force_upcast``)."""
    import diffusers

    name = "vae" if "vae" in index else "vqvae" if "vqvae" in index else None
    if name is None:
        raise _LoadError(f"model {source!r} has no autoencoder (expected a 'vae' or 'vqvae' component)")
    cls_name = _class_name(index, name) or _component_config(source, name).get("_class_name")
    cls = getattr(diffusers, str(cls_name), None)
    if cls_name not in ("AutoencoderKL", "AutoencoderTiny", "VQModel") or cls is None:
        raise _LoadError(
            f"model {source!r}: autoencoder class {cls_name!r} is not supported "
            "(AutoencoderKL, AutoencoderTiny or VQModel)"
        )
    if vae_dtype is None:
        upcast = cls_name == "AutoencoderKL" and bool(
            cls.load_config(source, subfolder=name).get("force_upcast", True)
        )
        vae_dtype = torch.float32 if (dtype != torch.float32 and upcast) else dtype
    return cls.from_pretrained(source, subfolder=name, torch_dtype=vae_dtype), cls_name, vae_dtype


def _load_unet(source: str, index: dict, dtype: torch.dtype):
    import diffusers

    if "unet" not in index:
        raise _LoadError(f"model {source!r} has no 'unet' component")
    cls_name = _class_name(index, "unet") or _component_config(source, "unet").get("_class_name")
    if cls_name not in ("UNet2DConditionModel", "UNet2DModel"):
        raise _LoadError(
            f"model {source!r}: UNet class {cls_name!r} is not supported "
            "(UNet2DConditionModel or UNet2DModel)"
        )
    return getattr(diffusers, cls_name).from_pretrained(source, subfolder="unet", torch_dtype=dtype), cls_name


def _load_scheduler_config(source: str, index: dict) -> tuple[dict, Tensor]:
    from diffusers import DDIMScheduler

    if "scheduler" not in index:
        raise _LoadError(f"model {source!r} has no 'scheduler' component")
    cfg = dict(DDIMScheduler.load_config(source, subfolder="scheduler"))
    known = {k: v for k, v in cfg.items() if not k.startswith("_")}
    sched = DDIMScheduler.from_config(known)
    return cfg, sched.alphas_cumprod


def _load_text(source: str, index: dict, dtype: torch.dtype):
    if "text_encoder" not in index or "tokenizer" not in index:
        return None, None
    import transformers

    enc_name = _class_name(index, "text_encoder") or "CLIPTextModel"
    tok_name = _class_name(index, "tokenizer") or "CLIPTokenizer"
    enc_cls, tok_cls = getattr(transformers, enc_name, None), getattr(transformers, tok_name, None)
    if enc_cls is None or tok_cls is None:
        raise _LoadError(
            f"model {source!r}: text classes {enc_name!r}/{tok_name!r} not found in transformers"
        )
    tokenizer = tok_cls.from_pretrained(source, subfolder="tokenizer")
    text_encoder = enc_cls.from_pretrained(source, subfolder="text_encoder", dtype=dtype)
    return tokenizer, text_encoder


_COMPONENTS = ("unet", "vae", "scheduler", "text_encoder", "tokenizer")


def load_model(
    model_id_or_path: str | os.PathLike | Any = None,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    vae_dtype: torch.dtype | str | None = None,
    guidance_scale: float = 1.0,
    prompt: str = "",
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    checkpointing: bool = False,
    low_memory: bool = False,
    channels_last: bool = False,
    **components: Any,
) -> LatentModel:
    """A :class:`LatentModel` from a model folder or hub id, a diffusers pipeline, or its components.

    ``model_id_or_path`` is a folder / hub id (see :func:`_load_folder` for the options), a pipeline
    object (``StableDiffusionPipeline``, ``LDMPipeline``, ...), or ``None`` with the modules given as
    ``unet=``, ``vae=``, ``scheduler=``, ``text_encoder=``, ``tokenizer=``. Objects are used as they are:
    no weight is reloaded or copied (:mod:`psld.models.interop`). ``low_memory`` and ``channels_last``
    are the runtime modes of :func:`psld.models.modes.apply_modes`.
    """
    unknown = sorted(set(components) - set(_COMPONENTS))
    if unknown:
        raise ValueError(f"load_model got unknown arguments {unknown}; components are {list(_COMPONENTS)}")
    options: dict[str, Any] = dict(
        device=check_device(device),
        dtype=dtype,
        vae_dtype=vae_dtype,
        guidance_scale=guidance_scale,
        prompt=prompt,
        vae_slicing=vae_slicing,
        vae_tiling=vae_tiling,
        checkpointing=checkpointing,
    )
    if components or not isinstance(model_id_or_path, (str, os.PathLike)):
        if components and model_id_or_path is not None:
            raise ValueError("pass either a model (path, hub id or pipeline) or components, not both")
        if components:
            model = interop.from_components(**components, **options)
        elif model_id_or_path is None:
            raise ValueError("load_model needs a model folder, hub id or pipeline, or unet=/scheduler=/vae=")
        else:
            model = interop.from_pipeline(model_id_or_path, **options)
    else:
        model = _load_folder(model_id_or_path, **options)
    from psld.models.modes import apply_modes

    return apply_modes(model, low_memory=low_memory, channels_last=channels_last)


def _read_presets(source: str) -> dict[str, dict[str, Any]]:
    """The folder's ``psld_presets.json`` (task -> PSLDConfig fields), or ``{}`` when it has none."""
    path = Path(source) / "psld_presets.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _LoadError(f"model {source!r} has an unreadable psld_presets.json ({_one_line(exc)})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise _LoadError(f"model {source!r}: psld_presets.json must map task names to settings")
    return data


def _load_folder(
    model_id_or_path: str | os.PathLike,
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    vae_dtype: torch.dtype | str | None = None,
    guidance_scale: float = 1.0,
    prompt: str = "",
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    checkpointing: bool = False,
) -> LatentModel:
    """Load a Stable Diffusion or unconditional LDM (local folder or hub id) as a :class:`LatentModel`.

    ``device`` defaults to CUDA when available, else CPU. ``dtype`` (UNet and text encoder) defaults to
    fp16 on CUDA and fp32 on CPU (``"bf16"`` is accepted); ``vae_dtype`` defaults to fp32 whenever the
    UNet runs in half precision and the autoencoder's config asks for ``force_upcast`` (AutoencoderKL:
    yes; AutoencoderTiny, VQModel: no), since PSLD back-propagates through the VAE. ``prompt`` (default
    empty) and ``guidance_scale`` (default 1: no doubled batch) set the prior's conditioning.
    ``vae_slicing``/``vae_tiling`` call ``enable_slicing()``/``enable_tiling()`` on the VAE module;
    ``checkpointing`` wraps the differentiable encoder/decoder calls in activation checkpointing
    (less memory during guidance, one more forward pass).

    Raises ``ValueError`` with one line for a missing path, a folder that is not a diffusers model, an
    unsupported component, or a hub id that cannot be fetched (offline and not in the cache).
    """
    source = os.fspath(model_id_or_path)
    from psld.models.builtin import builtin_model_path

    builtin = builtin_model_path(source)
    if builtin is not None:
        source = os.fspath(builtin)
    device = default_device() if device is None else torch.device(device)
    dtype = resolve_dtype(dtype, device)
    if vae_dtype is not None:
        vae_dtype = resolve_dtype(vae_dtype, device)
    local = os.path.exists(source)
    if not local:
        if source.endswith((".ckpt", ".safetensors", ".pt", ".bin")):
            raise ValueError(
                f"model file {source!r} does not exist (and single-file checkpoints are not supported)"
            )
        if not _HUB_ID.match(source):
            raise ValueError(f"model folder {source!r} does not exist")
    elif not os.path.isdir(source):
        raise ValueError(
            f"model {source!r} is a file; pass a diffusers model folder "
            "(single-file checkpoints are not supported)"
        )
    try:
        index = _read_index(source, local)
        unet, unet_cls = _load_unet(source, index, dtype)
        pixel = unet_cls == "UNet2DModel" and "vae" not in index and "vqvae" not in index
        if pixel:
            vae = None
        else:
            vae, _, vae_dtype = _load_vae(source, index, dtype, vae_dtype)
        sched_cfg, fallback_ac = _load_scheduler_config(source, index)
        tokenizer, text_encoder = (
            _load_text(source, index, dtype) if unet_cls == "UNet2DConditionModel" else (None, None)
        )
    except _LoadError as exc:
        raise ValueError(str(exc)) from None
    except Exception as exc:  # deep diffusers / transformers / hub / safetensors errors
        raise ValueError(f"could not load model {source!r}: {_one_line(exc)}") from None

    presets = _read_presets(source) if local else {}
    check_conditioning(unet, text_encoder, tokenizer, prompt, guidance_scale, source)
    unet = freeze(unet.to(device))
    vae = freeze(vae.to(device)) if vae is not None else None
    if text_encoder is not None:
        text_encoder = freeze(text_encoder.to(device))
    model = assemble(
        unet,
        vae,
        sched_cfg,
        fallback_ac,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        device=device,
        checkpointing=checkpointing,
        slicing=vae_slicing,
        tiling=vae_tiling,
        prompt=prompt,
        guidance_scale=guidance_scale,
        source=source,
    )
    model.presets = presets
    return model
