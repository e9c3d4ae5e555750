"""The frozen autoencoder a prior is trained over: a diffusers folder or the TAESD weight files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_autoencoder", "taesd_state_dict"]

_TAESD_FILES = ("taesd_encoder.safetensors", "taesd_decoder.safetensors")


def taesd_state_dict(encoder_file: str | os.PathLike, decoder_file: str | os.PathLike) -> dict:
    """TAESD's two files as an ``AutoencoderTiny`` state dict (float32).

    The files index their layers as a flat ``nn.Sequential``: encoder key ``K`` is ``encoder.layers.K``;
    decoder key ``I.rest`` is ``decoder.layers.(I-1).rest`` (file index 0 is a weightless clamp that
    ``AutoencoderTiny``'s decoder applies itself).
    """
    from safetensors.torch import load_file

    state = {f"encoder.layers.{k}": v.float() for k, v in load_file(os.fspath(encoder_file)).items()}
    for key, value in load_file(os.fspath(decoder_file)).items():
        index, rest = key.split(".", 1)
        state[f"decoder.layers.{int(index) - 1}.{rest}"] = value.float()
    return state


def _taesd_from_files(folder: Path) -> Any:
    from diffusers import AutoencoderTiny

    state = taesd_state_dict(folder / _TAESD_FILES[0], folder / _TAESD_FILES[1])
    channels = state["encoder.layers.14.weight"].shape[0] if "encoder.layers.14.weight" in state else 4
    vae = AutoencoderTiny(latent_channels=int(channels))
    vae.load_state_dict(state, strict=True)
    return vae


def load_autoencoder(path: str | os.PathLike) -> tuple[Any, str]:
    """``(module, class name)``: a frozen float32 ``AutoencoderKL``/``AutoencoderTiny``.

    ``path`` is a diffusers autoencoder folder (``config.json`` + weights), a model folder with a
    ``vae/`` subfolder, or a folder holding TAESD's ``taesd_encoder.safetensors`` and
    ``taesd_decoder.safetensors``. ``ValueError`` (one line) for anything else.
    """
    folder = Path(path)
    if not folder.is_dir():
        raise ValueError(f"autoencoder {os.fspath(path)!r} is not a folder")
    if (folder / "vae" / "config.json").is_file():
        folder = folder / "vae"
    try:
        if all((folder / name).is_file() for name in _TAESD_FILES):
            vae, cls_name = _taesd_from_files(folder), "AutoencoderTiny"
        elif (folder / "config.json").is_file():
            import diffusers

            cls_name = str(json.loads((folder / "config.json").read_text()).get("_class_name"))
            if cls_name not in ("AutoencoderKL", "AutoencoderTiny"):
                raise ValueError(
                    f"autoencoder {os.fspath(path)!r} is a {cls_name}; "
                    "expected AutoencoderKL or AutoencoderTiny"
                )
            vae = getattr(diffusers, cls_name).from_pretrained(folder, torch_dtype=torch.float32)
        else:
            raise ValueError(
                f"autoencoder {os.fspath(path)!r} holds neither a diffusers config.json nor TAESD's "
                f"{' and '.join(_TAESD_FILES)}"
            )
    except ValueError:
        raise
    except Exception as exc:  # safetensors / diffusers errors on corrupt files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"could not load autoencoder {os.fspath(path)!r}: {first}") from None
    vae = vae.float().eval().requires_grad_(False)
    return vae, cls_name
