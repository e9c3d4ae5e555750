"""The loaded model (:class:`LatentModel`) and its device/dtype helpers.

A leaf below :mod:`psld.models.loading` (folders and hub ids) and :mod:`psld.models.interop` (pipelines
and modules a user holds): both build a :class:`LatentModel`, and neither imports the other.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from psld import validation
from psld.models.adapters import KLDecoder, KLEncoder, UNetPrior, VQDecoder, VQEncoder
from psld.protocols import Identity

__all__ = ["LatentModel", "resolve_dtype", "default_device", "check_device"]

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


def default_device() -> torch.device:
    """``cuda`` when available, else ``cpu``."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: torch.device | str | None, name: str = "device") -> torch.device | None:
    """``device`` as a ``torch.device`` (``None`` stays ``None``), or a one-line ``ValueError`` when it
    is not a device name or names an accelerator this machine lacks (:func:`psld.validation.device`)."""
    return validation.device(device, name)


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

    # ------------------------------------------------------------------ shapes and settings
    def latent_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Latent shape ``(C, h, w)`` for an image of ``height x width`` (multiples of ``latent_factor``)."""
        f = self.latent_factor
        if height % f or width % f:
            raise ValueError(f"image size {height}x{width} is not a multiple of the latent factor {f}")
        return (self.latent_channels, height // f, width // f)

    @property
    def num_train_timesteps(self) -> int:
        """The training timesteps ``T`` of the scheduler: the largest step count a run may take."""
        return int(self.prior.alphas_cumprod.numel())

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
        _move(self.prior.unet, device, dtype)
        if self.text_encoder is not None and not self.text_encoder_offloaded:
            self.text_encoder.to(device=device, dtype=dtype)
        for vae in {id(m.vae): m.vae for m in (self.encoder, self.decoder) if hasattr(m, "vae")}.values():
            _move(vae, device, vae_dtype)
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


def _move(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """``module.to(device, dtype)`` without diffusers' warning about float32 modules when it has none.

    diffusers' ``ModelMixin.to`` warns "There are modules ... that should be kept in float32: []" on every
    cast, even with an empty list; a module that does list some goes through diffusers' own ``to``.
    """
    if getattr(module, "_keep_in_fp32_modules", None):
        module.to(device=device, dtype=dtype)
    else:
        torch.nn.Module.to(module, device=device, dtype=dtype)
