"""Adapters from diffusers modules to the core's protocols (:mod:`psld.protocols`).

* :class:`UNetPrior` wraps a ``UNet2DConditionModel`` (Stable Diffusion, with ``prompt_embeds``) or a
  ``UNet2DModel`` (unconditional LDM) as a :class:`~psld.protocols.LatentPrior`.
* :class:`KLEncoder` / :class:`KLDecoder` wrap an ``AutoencoderKL`` (or an ``AutoencoderTiny``);
  :class:`VQEncoder` / :class:`VQDecoder` wrap a ``VQModel``.

Conventions shared by all adapters:

* The wrapped modules are frozen: ``requires_grad_(False)`` and ``eval()``. Gradients still flow to the
  *inputs* (the latent ``z_t`` and the decoded image), which is all the sampler needs; no parameter
  gradient is ever computed or stored.
* Mixed precision: each adapter casts its input to its module's dtype and casts the result back to the
  input's dtype, so the core can keep latents and images in float32 while the UNet runs in fp16/bf16
  and the VAE in fp32 (diffusers' ``force_upcast``).
* Latent scaling follows diffusers' pipelines: KL/Tiny latents are multiplied by
  ``vae.config.scaling_factor`` on encoding and divided by it on decoding; VQ latents are not scaled
  (``LDMPipeline`` decodes its latents unscaled, and the official LDM uses ``scale_factor = 1``).

Nothing here imports diffusers at module level; the adapters duck-type the modules they wrap.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from psld.random import GeneratorLike, randn_like_batch

__all__ = [
    "UNetPrior",
    "KLEncoder",
    "KLDecoder",
    "VQEncoder",
    "VQDecoder",
    "freeze",
    "alphas_cumprod_from_config",
]


def freeze(module: Any) -> Any:
    """``requires_grad_(False)`` and ``eval()`` on a torch module (no-op for ``None``); returns it."""
    if module is not None:
        module.requires_grad_(False)
        module.eval()
    return module


def _module_dtype(module: Any) -> torch.dtype:
    dtype = getattr(module, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    return next(module.parameters()).dtype


def _module_device(module: Any) -> torch.device:
    device = getattr(module, "device", None)
    if isinstance(device, torch.device):
        return device
    return next(module.parameters()).device


def alphas_cumprod_from_config(config: dict, fallback: Tensor | None = None) -> Tensor:
    """``alphas_cumprod`` (float64) from a diffusers scheduler config.

    For the ``linear`` and ``scaled_linear`` beta schedules the betas are rebuilt in float64 from
    ``beta_start``/``beta_end`` (diffusers builds them in float32); other schedules, trained betas and
    zero-SNR rescaling use ``fallback`` (the scheduler's own float32 ``alphas_cumprod``) cast to float64.
    """
    from psld.schedule import alphas_cumprod_from_betas, linear_betas, scaled_linear_betas

    kind = config.get("beta_schedule", "linear")
    plain = not config.get("trained_betas") and not config.get("rescale_betas_zero_snr", False)
    T = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 1e-4)), float(config.get("beta_end", 2e-2))
    if plain and kind == "linear":
        return alphas_cumprod_from_betas(linear_betas(T, start, end))
    if plain and kind == "scaled_linear":
        return alphas_cumprod_from_betas(scaled_linear_betas(T, start, end))
    if fallback is None:
        raise ValueError(f"cannot rebuild alphas_cumprod for beta_schedule {kind!r} without the scheduler")
    return torch.as_tensor(fallback).detach().to("cpu", torch.float64)


class UNetPrior:
    """A diffusers UNet as a latent prior: ``eps(z_t, t)`` predicts the noise in ``z_t``.

    ``unet`` is a ``UNet2DConditionModel`` (then ``prompt_embeds`` ``[1 or B, L, D]`` are required) or a
    ``UNet2DModel`` (unconditional; ``prompt_embeds`` must be ``None``). ``alphas_cumprod`` is the float64
    ``[T]`` schedule of the model's scheduler.

    Classifier-free guidance runs only when ``guidance_scale != 1``: the batch is doubled with
    ``negative_prompt_embeds`` (default: the same embeddings as the prompt, e.g. the empty prompt) and
    ``eps = e_neg + s (e_cond - e_neg)``. With the default scale 1 the UNet runs once on the batch; for
    the official setting (scale 7.5 with prompt "" for both) that is the same result at half the cost.

    ``prediction_type`` is the scheduler's: ``"epsilon"`` (SD 1.x, LDM) is used as is; ``"v_prediction"``
    (SD 2.x at 768) is converted with ``eps = sqrt(a) v + sqrt(1 - a) z_t``; ``"sample"`` with
    ``eps = (z_t - sqrt(a) x0) / sqrt(1 - a)`` (``a = alphas_cumprod[t]``). The UNet runs in its own dtype;
    ``eps`` is returned in ``z_t``'s dtype.
    """

    def __init__(
        self,
        unet: Any,
        alphas_cumprod: Tensor,
        *,
        prediction_type: str = "epsilon",
        prompt_embeds: Tensor | None = None,
        negative_prompt_embeds: Tensor | None = None,
        guidance_scale: float = 1.0,
    ):
        if prediction_type not in ("epsilon", "v_prediction", "sample"):
            raise ValueError(
                f"prediction_type must be 'epsilon', 'v_prediction' or 'sample', got {prediction_type!r}"
            )
        self.unet = freeze(unet)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float64).detach().cpu()
        self.prediction_type = prediction_type
        self.conditional = getattr(getattr(unet, "config", None), "cross_attention_dim", None) is not None
        if self.conditional and prompt_embeds is None:
            raise ValueError("a text-conditioned UNet needs prompt_embeds (encode the empty prompt for none)")
        if not self.conditional and prompt_embeds is not None:
            raise ValueError("prompt_embeds were given but the UNet is unconditional")
        self.prompt_embeds = prompt_embeds
        self.negative_prompt_embeds = negative_prompt_embeds
        self.guidance_scale = float(guidance_scale)

    def with_prompt(
        self,
        prompt_embeds: Tensor | None = None,
        negative_prompt_embeds: Tensor | None = None,
        guidance_scale: float | None = None,
    ) -> UNetPrior:
        """A new prior sharing this UNet with other prompt embeddings and/or guidance scale."""
        return UNetPrior(
            self.unet,
            self.alphas_cumprod,
            prediction_type=self.prediction_type,
            prompt_embeds=self.prompt_embeds if prompt_embeds is None else prompt_embeds,
            negative_prompt_embeds=(
                self.negative_prompt_embeds if negative_prompt_embeds is None else negative_prompt_embeds
            ),
            guidance_scale=self.guidance_scale if guidance_scale is None else guidance_scale,
        )

    @staticmethod
    def _batch_embeds(embeds: Tensor, batch: int, device, dtype) -> Tensor:
        embeds = embeds.to(device=device, dtype=dtype)
        if embeds.shape[0] == batch:
            return embeds
        if embeds.shape[0] == 1:
            return embeds.expand(batch, *embeds.shape[1:])
        raise ValueError(f"prompt_embeds have batch {embeds.shape[0]}, expected 1 or {batch}")

    def _raw(self, z: Tensor, t: int) -> Tensor:
        dtype, device = _module_dtype(self.unet), _module_device(self.unet)
        x = z.to(device=device, dtype=dtype)
        tt = torch.tensor(int(t), device=device, dtype=torch.long)
        if not self.conditional:
            return self.unet(x, tt).sample
        b = x.shape[0]
        assert self.prompt_embeds is not None, "a conditional UNet needs prompt embeddings"
        cond = self._batch_embeds(self.prompt_embeds, b, device, dtype)
        if self.guidance_scale == 1.0:
            return self.unet(x, tt, encoder_hidden_states=cond).sample
        neg = self.negative_prompt_embeds if self.negative_prompt_embeds is not None else self.prompt_embeds
        neg = self._batch_embeds(neg, b, device, dtype)
        out = self.unet(torch.cat([x, x]), tt, encoder_hidden_states=torch.cat([neg, cond])).sample
        e_neg, e_cond = out.chunk(2)
        return e_neg + self.guidance_scale * (e_cond - e_neg)

    def eps(self, z_t: Tensor, t: int) -> Tensor:
        """Noise prediction at integer timestep ``t``, differentiable in ``z_t``, in ``z_t``'s dtype."""
        out = self._raw(z_t, t).to(device=z_t.device, dtype=z_t.dtype)
        if self.prediction_type == "epsilon":
            return out
        index = min(max(int(t), 0), self.alphas_cumprod.numel() - 1)
        a = float(self.alphas_cumprod[index])
        if self.prediction_type == "v_prediction":
            return a**0.5 * out + (1.0 - a) ** 0.5 * z_t
        return (z_t - a**0.5 * out) / (1.0 - a) ** 0.5


def _maybe_checkpoint(fn, x: Tensor, enabled: bool):
    """Run ``fn(x)``, through activation checkpointing when enabled and a graph is being built.

    ``fn`` must be deterministic (it is run again in the backward pass)."""
    if enabled and torch.is_grad_enabled() and x.requires_grad:
        from torch.utils.checkpoint import checkpoint

        return checkpoint(fn, x, use_reentrant=False)
    return fn(x)


class _VAEAdapter:
    """Common part: frozen module, dtype casting, optional checkpointing/slicing/tiling."""

    def __init__(self, vae: Any, *, checkpointing: bool = False, slicing: bool = False, tiling: bool = False):
        self.vae = freeze(vae)
        self.checkpointing = bool(checkpointing)
        if slicing:
            vae.enable_slicing()
        if tiling:
            vae.enable_tiling()

    @property
    def scaling_factor(self) -> float:
        return float(getattr(self.vae.config, "scaling_factor", 1.0) or 1.0)

    def _in(self, t: Tensor) -> Tensor:
        return t.to(device=_module_device(self.vae), dtype=_module_dtype(self.vae))


class KLEncoder(_VAEAdapter):
    """``AutoencoderKL`` (or ``AutoencoderTiny``) encoder: image in [-1, 1] -> scaled latent.

    ``__call__`` is deterministic: ``latent_dist.mode() * scaling_factor`` (``AutoencoderTiny``:
    ``encode(x).latents * scaling_factor``). :meth:`sample` draws from the KL posterior
    ``mean + std * n`` with ``n`` from :func:`psld.random.randn_like_batch` (one generator per batch row
    gives per-row streams), as the official code's glue encoding does.
    """

    def _posterior(self, x: Tensor):
        out = self.vae.encode(self._in(x))
        return getattr(out, "latent_dist", None), out

    def _encode_mode(self, x: Tensor) -> Tensor:
        dist, out = self._posterior(x)
        z = dist.mode() if dist is not None else out.latents
        return z * self.scaling_factor

    def __call__(self, x: Tensor) -> Tensor:
        return _maybe_checkpoint(self._encode_mode, x, self.checkpointing).to(x.dtype)

    def sample(self, x: Tensor, generator: GeneratorLike = None) -> Tensor:
        """A posterior sample times ``scaling_factor`` (the mode for the deterministic ``AutoencoderTiny``).

        The noise is drawn once, outside activation checkpointing: a recomputation in the backward pass
        must not draw again from the caller's generators (that would change the gradient's noise and
        advance the streams).
        """

        def moments(inp: Tensor) -> Tensor:
            dist, out = self._posterior(inp)
            if dist is None:
                return torch.stack([out.latents, torch.zeros_like(out.latents)])
            return torch.stack([dist.mean, dist.std])

        mean, std = _maybe_checkpoint(moments, x, self.checkpointing)
        noise = randn_like_batch(mean.shape, generator, mean.device, mean.dtype)
        return ((mean + std * noise) * self.scaling_factor).to(x.dtype)


class KLDecoder(_VAEAdapter):
    """``AutoencoderKL``/``AutoencoderTiny`` decoder: ``vae.decode(z / scaling_factor).sample``."""

    def _decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(self._in(z / self.scaling_factor)).sample

    def __call__(self, z: Tensor) -> Tensor:
        return _maybe_checkpoint(self._decode, z, self.checkpointing).to(z.dtype)


class VQEncoder(_VAEAdapter):
    """``VQModel`` encoder: the pre-quantisation latent ``vqvae.encode(x).latents`` (as the official code).

    The encoding is deterministic, so :meth:`sample` equals ``__call__``. Latents are not scaled.
    """

    @property
    def scaling_factor(self) -> float:
        return 1.0

    def _encode(self, x: Tensor) -> Tensor:
        return self.vae.encode(self._in(x)).latents

    def __call__(self, x: Tensor) -> Tensor:
        return _maybe_checkpoint(self._encode, x, self.checkpointing).to(x.dtype)

    def sample(self, x: Tensor, generator: GeneratorLike = None) -> Tensor:
        return self(x)


class VQDecoder(_VAEAdapter):
    """``VQModel`` decoder through the quantiser: ``vqvae.decode(z).sample``.

    diffusers' ``VQModel.decode`` quantises by default, and its ``VectorQuantizer`` returns
    ``z + (z_q - z).detach()`` (straight-through), so the forward value uses the codebook while gradients
    pass to ``z`` unchanged, as in the official LDM code. ``quantize=False`` decodes the continuous latent
    instead (``force_not_quantize=True``).
    """

    def __init__(self, vae: Any, *, quantize: bool = True, **kw):
        super().__init__(vae, **kw)
        self.quantize = bool(quantize)

    @property
    def scaling_factor(self) -> float:
        return 1.0

    def _decode(self, z: Tensor) -> Tensor:
        return self.vae.decode(self._in(z), force_not_quantize=not self.quantize).sample

    def __call__(self, z: Tensor) -> Tensor:
        return _maybe_checkpoint(self._decode, z, self.checkpointing).to(z.dtype)
