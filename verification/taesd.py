"""Finding and loading the TAESD autoencoder (``diffusers.AutoencoderTiny``, 4 latent channels) for T13.

Where the weights come from, first found wins:

1. ``psld.models.builtin.taesd_path()`` (the copy shipped inside the package, once it exists);
2. the environment variable ``PSLD_TAESD``: a ``save_pretrained`` folder (``config.json`` +
   ``diffusion_pytorch_model.safetensors``), or a folder with the raw ``taesd_encoder.safetensors`` /
   ``taesd_decoder.safetensors``, converted once into a ``save_pretrained`` folder under the temp dir.

Raw key renaming (the original TAESD files): encoder key ``K`` -> ``encoder.layers.K``; decoder key
``I.rest`` -> ``decoder.layers.(I-1).rest`` (the files' decoder layer 0 is a weightless clamp that
``AutoencoderTiny`` applies itself). Weights are loaded as float32.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

RAW = ("taesd_encoder.safetensors", "taesd_decoder.safetensors")


def is_pretrained_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and any(path.glob("diffusion_pytorch_model*.safetensors"))


def convert_raw(src: str | Path, dst: str | Path) -> Path:
    """Write the raw TAESD halves in ``src`` as an ``AutoencoderTiny`` ``save_pretrained`` folder ``dst``."""
    from diffusers import AutoencoderTiny
    from safetensors.torch import load_file

    src, dst = Path(src), Path(dst)
    missing = [n for n in RAW if not (src / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{src} has no {', '.join(missing)}")
    state = {}
    for key, value in load_file(str(src / RAW[0])).items():
        state[f"encoder.layers.{key}"] = value.float()
    for key, value in load_file(str(src / RAW[1])).items():
        index, rest = key.split(".", 1)
        state[f"decoder.layers.{int(index) - 1}.{rest}"] = value.float()
    model = AutoencoderTiny(latent_channels=4)
    result = model.load_state_dict(state, strict=True)
    if result.missing_keys or result.unexpected_keys:  # pragma: no cover - strict raises first
        raise ValueError(f"TAESD keys do not match: {result}")
    dst.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(dst))
    return dst


def taesd_folder() -> Path | None:
    """A ``save_pretrained`` TAESD folder, or ``None`` when no weights are available (see the module doc)."""
    try:
        from psld.models.builtin import taesd_path  # type: ignore[import-not-found]

        p = Path(taesd_path())
        if is_pretrained_folder(p):
            return p
    except (ImportError, AttributeError, FileNotFoundError, OSError):
        pass
    env = os.environ.get("PSLD_TAESD")
    if not env:
        return None
    p = Path(env)
    if is_pretrained_folder(p):
        return p
    if all((p / n).is_file() for n in RAW):
        digest = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:12]
        out = Path(tempfile.gettempdir()) / f"psld-taesd-{digest}"
        return out if is_pretrained_folder(out) else convert_raw(p, out)
    return None


def load(folder: str | Path):
    """``(vae, encoder, decoder)``: the frozen float32 ``AutoencoderTiny`` and the core's adapters."""
    import torch
    from diffusers import AutoencoderTiny

    from psld.models.adapters import KLDecoder, KLEncoder

    vae = AutoencoderTiny.from_pretrained(str(folder), torch_dtype=torch.float32)
    return vae, KLEncoder(vae), KLDecoder(vae)
