"""diffusers objects a user already holds as a :class:`~psld.models.loading.LatentModel`.

:func:`from_pipeline` takes a ``StableDiffusionPipeline`` (family ``"sd"``), an ``LDMPipeline``
(``"ldm"``), a ``DDPMPipeline`` (``"pixel"``: no autoencoder, identity encoder/decoder) or any
pipeline-like object with ``unet``, ``scheduler`` and ``vae``/``vqvae`` attributes;
:func:`from_components` takes the modules themselves (``unet=``, ``vae=``, ``scheduler=``,
``text_encoder=``, ``tokenizer=``). Nothing is reloaded or copied: the model holds the very modules
(the same parameter tensors), which are frozen in place (``requires_grad_(False)``, ``eval()``).
They are moved or cast only when ``device``/``dtype``/``vae_dtype`` ask for something else than
what they already are (``torch.nn.Module.to`` then replaces the parameters, as usual).

Only the scheduler's configuration is read (betas, ``prediction_type``, ``steps_offset``, ...), so any
diffusers scheduler works (DDIM, PNDM, DDPM, ...): the DDIM loop is the core's own.
"""

from __future__ import annotations

from typing import Any

import torch

from psld.models.adapters import (
    KLDecoder,
    KLEncoder,
    UNetPrior,
    VQDecoder,
    VQEncoder,
    alphas_cumprod_from_config,
    freeze,
)
from psld.models.latent import LatentModel, resolve_dtype
from psld.protocols import Identity

__all__ = ["from_pipeline", "from_components", "assemble", "check_conditioning"]

_UNETS = ("UNet2DConditionModel", "UNet2DModel")
_VAES = ("AutoencoderKL", "AutoencoderTiny", "VQModel")
_SPACINGS = ("leading", "trailing", "linspace")


def _kind(obj: Any) -> str:
    return type(obj).__name__


def _first_param(module: Any) -> torch.Tensor:
    return next(module.parameters())


def _place(module: Any, name: str, device: torch.device, dtype: torch.dtype | None) -> Any:
    """Move/cast ``module`` only where it differs from ``device``/``dtype``; freeze it."""
    if module is None:
        return None
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"{name} must be a torch module, got {_kind(module)}")
    p = _first_param(module)
    if p.device != device or (dtype is not None and p.dtype != dtype):
        module.to(device=device, dtype=dtype if dtype is not None else p.dtype)
    return freeze(module)


def from_pipeline(pipeline: Any, **options: Any) -> Any:
    """A :class:`LatentModel` from a diffusers pipeline object (its modules are shared, not copied).

    ``options`` are those of :func:`from_components` (``device``, ``dtype``, ``prompt``, ...).
    """
    unet = getattr(pipeline, "unet", None)
    scheduler = getattr(pipeline, "scheduler", None)
    if unet is None or scheduler is None:
        raise ValueError(
            f"model: a {_kind(pipeline)} is not a supported diffusers pipeline "
            "(expected an object with unet and scheduler, e.g. StableDiffusionPipeline or LDMPipeline)"
        )
    vae = getattr(pipeline, "vae", None)
    if vae is None:
        vae = getattr(pipeline, "vqvae", None)
    return from_components(
        unet=unet,
        vae=vae,
        scheduler=scheduler,
        text_encoder=getattr(pipeline, "text_encoder", None),
        tokenizer=getattr(pipeline, "tokenizer", None),
        source=_kind(pipeline),
        **options,
    )


def _scheduler_config(scheduler: Any) -> tuple[dict, torch.Tensor | None]:
    config = getattr(scheduler, "config", None)
    if config is None:
        raise ValueError(f"scheduler must be a diffusers scheduler (with .config), got {_kind(scheduler)}")
    return dict(config), getattr(scheduler, "alphas_cumprod", None)


def from_components(
    *,
    unet: Any,
    scheduler: Any,
    vae: Any = None,
    text_encoder: Any = None,
    tokenizer: Any = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    vae_dtype: torch.dtype | str | None = None,
    guidance_scale: float = 1.0,
    prompt: str = "",
    vae_slicing: bool = False,
    vae_tiling: bool = False,
    checkpointing: bool = False,
    source: str = "components",
) -> Any:
    """A :class:`LatentModel` from diffusers modules.

    ``unet``: ``UNet2DConditionModel`` (then ``text_encoder`` and ``tokenizer`` are needed to encode
    ``prompt``) or ``UNet2DModel``; ``vae``: ``AutoencoderKL``, ``AutoencoderTiny`` or ``VQModel``, or
    ``None`` with a ``UNet2DModel`` on RGB images (a pixel-space model, family ``"pixel"``);
    ``scheduler``: any diffusers scheduler (only its config is used). ``device`` defaults to the UNet's
    device; ``dtype`` (UNet and text encoder) and ``vae_dtype`` default to each module's own dtype, so
    by default nothing is moved or cast. The other options are :func:`psld.load_model`'s.
    """
    if _kind(unet) not in _UNETS:
        raise ValueError(f"unet must be a diffusers {' or '.join(_UNETS)}, got {_kind(unet)}")
    pixel = vae is None and _kind(unet) == "UNet2DModel"  # DDPMPipeline: pixel-space model
    if vae is None and not pixel:
        raise ValueError(f"vae must be a diffusers {', '.join(_VAES)} (model {source!r} has none)")
    if not pixel and _kind(vae) not in _VAES:
        raise ValueError(f"vae must be a diffusers {', '.join(_VAES)}, got {_kind(vae)}")
    sched_cfg, fallback_ac = _scheduler_config(scheduler)
    device = _first_param(unet).device if device is None else torch.device(device)
    dtype = None if dtype is None else resolve_dtype(dtype, device)
    vae_dtype = None if vae_dtype is None else resolve_dtype(vae_dtype, device)
    conditional = _kind(unet) == "UNet2DConditionModel"
    check_conditioning(unet, text_encoder, tokenizer, prompt, guidance_scale, source)

    unet = _place(unet, "unet", device, dtype)
    vae = _place(vae, "vae", device, vae_dtype)
    text_encoder = _place(text_encoder, "text_encoder", device, dtype) if conditional else None
    return assemble(
        unet,
        vae,
        sched_cfg,
        fallback_ac,
        text_encoder=text_encoder,
        tokenizer=tokenizer if conditional else None,
        device=device,
        checkpointing=checkpointing,
        slicing=vae_slicing,
        tiling=vae_tiling,
        prompt=prompt,
        guidance_scale=guidance_scale,
        source=source,
    )


def check_conditioning(unet: Any, text_encoder: Any, tokenizer: Any, prompt: str, guidance_scale: float,
                       source: str) -> None:  # fmt: skip
    """A text-conditioned UNet needs a text encoder and tokenizer; an unconditional one takes no prompt."""
    if _kind(unet) == "UNet2DConditionModel":
        if text_encoder is None or tokenizer is None:
            raise ValueError(
                f"model {source!r}: a text-conditioned unet (UNet2DConditionModel) needs text_encoder and "
                "tokenizer to encode prompts"
            )
    elif prompt or guidance_scale != 1.0:
        raise ValueError(f"model {source!r} is unconditional: prompt and guidance_scale are not supported")


def assemble(
    unet: Any,
    vae: Any,
    sched_cfg: dict,
    fallback_ac: torch.Tensor | None,
    *,
    text_encoder: Any,
    tokenizer: Any,
    device: torch.device,
    checkpointing: bool,
    slicing: bool,
    tiling: bool,
    prompt: str,
    guidance_scale: float,
    source: str,
) -> Any:
    """The :class:`LatentModel` of placed, frozen modules: adapters, sizes, scheduler settings, prior.

    The one assembly step of :func:`from_components` and of folder loading (:func:`psld.load_model`):
    ``vae=None`` with a ``UNet2DModel`` is the pixel family (identity encoder/decoder).
    """
    conditional = _kind(unet) == "UNet2DConditionModel"
    pixel = vae is None
    vae_opts = dict(checkpointing=checkpointing, slicing=slicing, tiling=tiling)
    encoder: Any
    decoder: Any
    if pixel:  # the "latent" is the image: identity encoder/decoder
        encoder = decoder = Identity()
        latent_channels, latent_factor = 3, 1
    elif _kind(vae) == "VQModel":
        encoder, decoder = VQEncoder(vae, **vae_opts), VQDecoder(vae, checkpointing=checkpointing)
        latent_channels = int(vae.config.vq_embed_dim or vae.config.latent_channels)
        latent_factor = 2 ** (len(vae.config.block_out_channels) - 1)
    else:
        encoder, decoder = KLEncoder(vae, **vae_opts), KLDecoder(vae, checkpointing=checkpointing)
        latent_channels = int(vae.config.latent_channels)
        tiny = _kind(vae) == "AutoencoderTiny"
        blocks = vae.config.encoder_block_out_channels if tiny else vae.config.block_out_channels
        latent_factor = 2 ** (len(blocks) - 1)
    if int(unet.config.in_channels) != latent_channels:
        raise ValueError(
            f"model {source!r}: the UNet takes {unet.config.in_channels} channels but "
            + ("a pixel-space model needs 3 (RGB)" if pixel else f"the autoencoder gives {latent_channels}")
        )
    unet_multiple = 1 if conditional else 2 ** (len(unet.config.down_block_types) - 1)
    spacing = sched_cfg.get("timestep_spacing", "leading")
    model = LatentModel(
        prior=None,  # type: ignore[arg-type]  # set below
        encoder=encoder,
        decoder=decoder,
        family="sd" if conditional else "pixel" if pixel else "ldm",
        latent_factor=latent_factor,
        latent_channels=latent_channels,
        size_multiple=latent_factor * unet_multiple,
        steps_offset=int(sched_cfg.get("steps_offset", 0) or 0),
        set_alpha_to_one=bool(sched_cfg.get("set_alpha_to_one", True)),
        timestep_spacing=spacing if spacing in _SPACINGS else "leading",
        device=device,
        dtype=_first_param(unet).dtype,
        vae_dtype=_first_param(vae if not pixel else unet).dtype,
        source=source,
        tokenizer=tokenizer,
        text_encoder=text_encoder,
    )
    alphas_cumprod = alphas_cumprod_from_config(sched_cfg, fallback_ac)
    prediction_type = sched_cfg.get("prediction_type", "epsilon")
    if conditional:
        embeds = model.encode_prompt(prompt)
        model.prior = UNetPrior(
            unet,
            alphas_cumprod,
            prediction_type=prediction_type,
            prompt_embeds=embeds,
            negative_prompt_embeds=model.encode_prompt("") if prompt else embeds,
            guidance_scale=guidance_scale,
        )
    else:
        model.prior = UNetPrior(unet, alphas_cumprod, prediction_type=prediction_type)
    return model
