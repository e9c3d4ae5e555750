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

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from psld.models.adapters import (
    KLDecoder,
    KLEncoder,
    UNetPrior,
    VQDecoder,
    VQEncoder,
    freeze,
)
from psld.protocols import Identity

__all__ = ["LatentModel", "load_model", "resolve_dtype", "default_device", "check_device"]

_DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*(/[\w.\-]+)?$")


def default_device() -> torch.device:
    """``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: torch.device | str | None) -> torch.device | None:
    """``device`` as a ``torch.device`` (``None`` stays ``None``), or a one-line ``ValueError`` when it
    is not a device name or names an accelerator this machine does not have (e.g. ``cuda`` without CUDA)."""
    if device is None:
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} requested but MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'mps', got {device!r}")
    return dev


def resolve_dtype(dtype: torch.dtype | str | None, device: torch.device) -> torch.dtype:
    """A torch dtype from a dtype, a name (``fp16``, ``bf16``, ``fp32``, ...) or ``None``.

    ``None`` means fp16 on CUDA and fp32 elsewhere.
    """
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be float32, float16 or bfloat16, got {dtype}")
        return dtype
    key = str(dtype).lower().removeprefix("torch.")
    if key not in _DTYPES:
        raise ValueError(f"dtype must be one of fp32, fp16, bf16 (or a torch dtype), got {dtype!r}")
    return _DTYPES[key]


@dataclass
class LatentModel:
    """A loaded latent diffusion model, ready for :func:`psld.sample` / :func:`psld.solve`.

    ``prior``/``encoder``/``decoder`` implement the core protocols. ``family`` is ``"sd"`` (text
    conditioned, KL autoencoder), ``"ldm"`` (unconditional, VQ) or ``"pixel"`` (unconditional, no
    autoencoder: identity encoder/decoder, ``latent_factor`` 1); it selects the task presets
    (:meth:`psld.config.PSLDConfig.preset`). ``latent_factor`` is the autoencoder's down-sampling factor
    (8 for SD, 4 for the FFHQ LDM) and ``size_multiple`` the multiple that image sides must have
    (the latent factor times the UNet's own multiple: 1 for ``UNet2DConditionModel``, which handles any
    latent size, ``2**(levels - 1)`` for ``UNet2DModel``). ``steps_offset``, ``set_alpha_to_one`` and
    ``timestep_spacing`` are the scheduler's settings; :meth:`scheduler_settings` gives them as
    :class:`~psld.config.PSLDConfig` fields.
    """

    prior: UNetPrior
    encoder: KLEncoder | VQEncoder | Identity
    decoder: KLDecoder | VQDecoder | Identity
    family: str
    latent_factor: int
    latent_channels: int
    size_multiple: int
    steps_offset: int
    set_alpha_to_one: bool
    timestep_spacing: str
    device: torch.device
    dtype: torch.dtype
    vae_dtype: torch.dtype
    source: str = ""
    tokenizer: Any = field(default=None, repr=False)
    text_encoder: Any = field(default=None, repr=False)
    #: the text encoder stays on the CPU (``low_memory``): :meth:`to` leaves it there
    text_encoder_offloaded: bool = False
    #: per-task settings tuned for this model (``psld_presets.json`` in its folder), e.g.
    #: ``{"sr4": {"omega": 0.5, "gamma": 0.05, "num_steps": 50}}``; see :func:`psld.presets.model_preset`
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)

    # ------------------------------------------------------------------ prompts
    @property
    def conditional(self) -> bool:
        """Whether the UNet is text conditioned (and so takes prompts)."""
        return self.prior.conditional

    def encode_prompt(self, prompt: str | list[str]) -> Tensor:
        """CLIP features ``[N, L, D]`` of ``prompt`` with the model's own tokenizer and text encoder."""
        if self.tokenizer is None or self.text_encoder is None:
            raise ValueError(
                "this model has no tokenizer/text encoder; pass prompt_embeds to with_prompt instead"
            )
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        tokens = self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        )
        device = next(self.text_encoder.parameters()).device
        with torch.no_grad():
            out = self.text_encoder(tokens.input_ids.to(device))
        return out[0].detach()

    def with_prompt(
        self,
        prompt: str | list[str] | None = None,
        *,
        negative_prompt: str | list[str] | None = None,
        prompt_embeds: Tensor | None = None,
        negative_prompt_embeds: Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> LatentModel:
        """A copy whose prior uses another prompt and/or guidance scale (the modules are shared).

        ``prompt`` (text) or ``prompt_embeds``; the negative prompt defaults to the empty prompt's
        embeddings the model was loaded with. Unconditional models accept only ``prompt`` in
        (``None``, ``""``) and a guidance scale of 1.
        """
        if not self.conditional:
            if (
                prompt not in (None, "")
                or prompt_embeds is not None
                or negative_prompt not in (None, "")
                or (guidance_scale not in (None, 1, 1.0))
            ):
                raise ValueError(
                    "this model is unconditional: prompts and guidance_scale != 1 are not supported"
                )
            return self
        if prompt is not None and prompt_embeds is None:
            prompt_embeds = self.encode_prompt(prompt)
        if negative_prompt is not None and negative_prompt_embeds is None:
            negative_prompt_embeds = self.encode_prompt(negative_prompt)
        prior = self.prior.with_prompt(prompt_embeds, negative_prompt_embeds, guidance_scale)
        return dataclasses.replace(self, prior=prior)

    def set_prompt(self, prompt: str | list[str] | None = None, **kwargs) -> None:
        """In-place version of :meth:`with_prompt` (same arguments)."""
        self.prior = self.with_prompt(prompt, **kwargs).prior

    # ------------------------------------------------------------------ shapes and settings
    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Latent shape ``(C, h, w)`` for an image of ``height x width`` (multiples of ``latent_factor``)."""
        f = self.latent_factor
        if height % f or width % f:
            raise ValueError(f"image size {height}x{width} is not a multiple of the latent factor {f}")
        return (self.latent_channels, height // f, width // f)

    def scheduler_settings(self) -> dict[str, Any]:
        """The scheduler's ``steps_offset``, ``set_alpha_to_one``, ``timestep_spacing`` (config fields)."""
        return {
            "steps_offset": self.steps_offset,
            "set_alpha_to_one": self.set_alpha_to_one,
            "timestep_spacing": self.timestep_spacing,
        }

    def to(
        self,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        *,
        vae_dtype: torch.dtype | str | None = None,
    ) -> LatentModel:
        """Move the modules in place (like ``torch.nn.Module.to``) and return ``self``.

        ``dtype`` applies to the UNet, the text encoder and the prompt embeddings, ``vae_dtype`` to the
        autoencoder; ``None`` keeps each one's dtype (``device=None``: the current device). A text encoder
        offloaded by ``low_memory`` stays on the CPU in its dtype.
        """
        device = self.device if device is None else torch.device(device)
        dtype = self.dtype if dtype is None else resolve_dtype(dtype, device)
        vae_dtype = self.vae_dtype if vae_dtype is None else resolve_dtype(vae_dtype, device)
        self.prior.unet.to(device=device, dtype=dtype)
        if self.text_encoder is not None and not self.text_encoder_offloaded:
            self.text_encoder.to(device=device, dtype=dtype)
        for vae in {id(m.vae): m.vae for m in (self.encoder, self.decoder) if hasattr(m, "vae")}.values():
            vae.to(device=device, dtype=vae_dtype)
        for name in ("prompt_embeds", "negative_prompt_embeds"):
            embeds = getattr(self.prior, name)
            if embeds is not None:
                setattr(self.prior, name, embeds.to(device=device, dtype=dtype))
        self.device, self.dtype, self.vae_dtype = device, dtype, vae_dtype
        return self

    def modules(self) -> list[torch.nn.Module]:
        """Every torch module of the model (UNet, autoencoder, text encoder)."""
        mods = [self.prior.unet]
        for vae in (getattr(self.encoder, "vae", None), getattr(self.decoder, "vae", None)):
            if vae is not None and all(vae is not m for m in mods):
                mods.append(vae)
        if self.text_encoder is not None:
            mods.append(self.text_encoder)
        return mods


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


def _class_name(index: dict, name: str) -> str | None:
    entry = index.get(name)
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and entry[1]:
        return str(entry[1])
    return None


def _component_config(source: str, sub: str) -> dict:
    from diffusers import ConfigMixin

    class _Reader(ConfigMixin):
        config_name = "config.json"

    return dict(_Reader.load_config(source, subfolder=sub))


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
    options = dict(
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
        from psld.models import interop

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

    from psld.models.interop import assemble, check_conditioning

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
