"""The official PSLD step as the official code computes it, written out for timing (not psld code).

Per DDIM step (official ``p_sample_ddim`` with the SD launchers' settings), each cost named:

* **doubled UNet batch**: classifier-free guidance at scale 7.5 with the empty prompt for both branches
  (``e_u + 7.5 (e_c - e_u)``, a no-op that runs the UNet on 2B latents);
* **trainable UNet + use_checkpoint**: the UNet's parameters keep ``requires_grad=True`` and SD's
  ``use_checkpoint=True`` wraps every ResBlock and transformer block in a checkpoint function whose
  forward runs without a graph and whose backward recomputes the block and asks autograd for the
  gradients of the block's inputs *and parameters* (:class:`_ParamGradCheckpoint`): one more UNet
  forward, plus the weight gradients, which ``torch.autograd.grad(loss, z_t)`` then discards;
* **full VAE decoder and encoder under gradient**, a sampled KL encoding, fresh N(0, 0.05^2) noise on
  the predicted measurement, unsquared norms over the whole batch;
* ``torch.autograd.grad(loss, z_t)`` (only ``z_t``'s gradient is returned) and a host sync
  (``loss.item()``) every step; on CUDA the whole step runs under fp16 ``autocast``.

For batch 1 it is the same math as ``psld.sample`` with ``PSLDConfig.official`` (same noise order from
the same generators), so the two final latents agree to rounding; :func:`official_steps` returns the
latent so the benchmark can print that difference.
"""

from __future__ import annotations

import contextlib
import sys

import torch
from torch import Tensor

from psld.random import randn_like_batch


class _ParamGradCheckpoint(torch.autograd.Function):
    """SD's ``use_checkpoint``: no graph in forward; backward recomputes, returns input + param grads."""

    @staticmethod
    def forward(ctx, run, n_inputs: int, *tensors: Tensor):
        ctx.run, ctx.n_inputs = run, n_inputs
        ctx.autocast = {
            dev: (torch.is_autocast_enabled(dev), torch.get_autocast_dtype(dev)) for dev in ("cpu", "cuda")
        }
        ctx.save_for_backward(*tensors[:n_inputs])
        ctx.params = tensors[n_inputs:]
        with torch.no_grad():
            return run(*tensors[:n_inputs])

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        inputs = [x.detach().requires_grad_(True) for x in ctx.saved_tensors]
        with torch.enable_grad():
            ctxs = [torch.autocast(d, dtype=dt, enabled=on) for d, (on, dt) in ctx.autocast.items()]
            for c in ctxs:
                c.__enter__()
            try:
                out = ctx.run(*[x.view_as(x) for x in inputs])
            finally:
                for c in reversed(ctxs):
                    c.__exit__(None, None, None)
        grads = torch.autograd.grad(out, [*inputs, *ctx.params], grad_out, allow_unused=True)
        return (None, None, *grads)


def _checkpointed_forward(module: torch.nn.Module):
    forward, params = module.forward, [p for p in module.parameters() if p.requires_grad]

    def run(*args, **kwargs):
        keys = [k for k, v in kwargs.items() if isinstance(v, Tensor)]
        spots = [i for i, a in enumerate(args) if isinstance(a, Tensor)]
        tensors = [args[i] for i in spots] + [kwargs[k] for k in keys]

        def call(*ts: Tensor):
            a = list(args)
            for i, t in zip(spots, ts[: len(spots)], strict=True):
                a[i] = t
            kw = {**kwargs, **dict(zip(keys, ts[len(spots) :], strict=True))}
            return forward(*a, **kw)

        return _ParamGradCheckpoint.apply(call, len(tensors), *tensors, *params)

    return run


@contextlib.contextmanager
def official_unet(unet: torch.nn.Module):
    """Within the block: trainable parameters and SD-style checkpointing of every ResBlock and
    transformer block (restored on exit, so the same weights serve the other variants)."""
    blocks = [m for m in unet.modules() if type(m).__name__ in ("ResnetBlock2D", "BasicTransformerBlock")]
    unet.requires_grad_(True)
    for module in blocks:
        module.forward = _checkpointed_forward(module)
    try:
        yield unet
    finally:
        for module in blocks:
            del module.forward  # back to the class's forward
        unet.requires_grad_(False)


def official_steps(unet, vae, embeds, op, y, latents, sched, gens, *, omega=1.0, gamma=0.1, on_step=None):
    """``len(sched)`` official DDIM steps from ``latents``; ``on_step(i)`` after each; the final latent."""
    with official_unet(unet):
        z = latents
        for i in range(len(sched)):
            z = _step(unet, vae, embeds, op, y, z, sched, i, gens, omega, gamma)
            if on_step is not None:
                on_step(i)
    return z


def _step(unet, vae, embeds, op, y, z, sched, i, gens, omega, gamma):
    sf, dev = float(vae.config.scaling_factor), y.device
    cond = embeds.expand(2 * y.shape[0], *embeds.shape[1:])
    half = dev.type == "cuda" and unet.dtype != torch.float32
    t, a, ap = int(sched.timesteps[i]), float(sched.alpha[i]), float(sched.alpha_prev[i])
    z = z.detach().requires_grad_(True)
    with torch.autocast(dev.type, dtype=unet.dtype, enabled=half):
        zz = torch.cat([z, z]).to(unet.dtype)
        e_u, e_c = unet(zz, t, encoder_hidden_states=cond).sample.to(z.dtype).chunk(2)
        eps = e_u + 7.5 * (e_c - e_u)
        z0 = (z - (1 - a) ** 0.5 * eps) / a**0.5
        z_prev = ap**0.5 * z0 + (1 - ap) ** 0.5 * eps
        x0 = vae.decode((z0 / sf).to(vae.dtype)).sample.to(z.dtype)
        pred = op(x0)
        pred = pred + 0.05 * randn_like_batch(pred.shape, gens, dev, pred.dtype)
        meas = torch.linalg.norm(pred - y)  # one norm over the whole batch
        glue_img = y + x0 - op(x0)  # official At = identity for masks
        dist = vae.encode(glue_img.to(vae.dtype)).latent_dist
        noise = randn_like_batch(dist.mean.shape, gens, dev, dist.mean.dtype)
        z_glue = ((dist.mean + dist.std * noise) * sf).to(z.dtype)
        glue = torch.linalg.norm(z_glue - z0)
        loss = omega * meas + gamma * glue
    (grad,) = torch.autograd.grad(loss, z)
    print(f"\rofficial step {i} loss {loss.item():.3f}", end="", file=sys.stderr)  # host sync
    return (z_prev - grad).detach()
