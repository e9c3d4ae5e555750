"""Models and images that ship inside the package (no download): ``psld.load_model("fashion-mnist")``.

``fashion-mnist``: a latent diffusion prior (diffusers ``UNet2DModel``, fp16) trained with ``psld train``
on Fashion-MNIST at 64x64 over TAESD (Stable Diffusion's latent space, 4x8x8 latents); its model card is
``fashion-mnist/README.md``. ``fashion-mnist-test``: held-out Fashion-MNIST test images (64x64 PNG) for
the demo and the quality tests; ``TEST_INDICES`` are their indices in the test set.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["BUILTIN_MODELS", "TEST_INDICES", "TEST_LABELS", "builtin_model_path", "taesd_path", "test_images"]

_HERE = Path(__file__).resolve().parent

#: built-in model names and their folders (inside this package).
BUILTIN_MODELS = {"fashion-mnist": _HERE / "fashion-mnist"}

#: Fashion-MNIST test-set indices of the shipped test images (``fashion-mnist-test/NNNNN.png``).
TEST_INDICES = tuple(range(9000, 9032))
#: their Fashion-MNIST labels (:data:`psld.perceptual.CLASSES` order), from the test set's label file.
TEST_LABELS = (6, 9, 0, 1, 6, 8, 1, 8, 2, 1, 8, 1, 7, 1, 9, 1, 8, 0, 9, 4, 1, 0, 8, 4, 4, 6, 8, 2, 2, 5, 5, 0)


def builtin_model_path(name: str) -> Path | None:
    """The folder of built-in model ``name``, or ``None`` when ``name`` is not one."""
    path = BUILTIN_MODELS.get(name)
    if path is None:
        return None
    if not (path / "model_index.json").is_file():
        raise ValueError(f"built-in model {name!r} is missing from this installation ({path})")
    return path


def taesd_path() -> Path:
    """The shipped TAESD autoencoder (diffusers ``AutoencoderTiny`` folder, fp16; MIT, see LICENSE-TAESD).

    Its ``scaling_factor`` is the built-in prior's (1 / std of the Fashion-MNIST latents), not TAESD's 1.
    """
    return BUILTIN_MODELS["fashion-mnist"] / "vae"


def test_images() -> list[Path]:
    """The shipped held-out test images, sorted by index."""
    return sorted((_HERE / "fashion-mnist-test").glob("*.png"))
