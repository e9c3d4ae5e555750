"""A domain-appropriate perceptual metric for Fashion-MNIST restorations (LPIPS/FID backbones are not
available offline): a small garment classifier shipped with the built-in model.

* class accuracy of restorations (does the prior restore a *shirt* as a shirt?);
* the Frechet distance between restorations and clean images in the classifier's 128-d penultimate
  feature space (the FID analogue):
  ``FD = ||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})``.

Images are ``[B, 3, H, W]`` in [0, 1]; they are turned gray (channel mean) and resized to 28x28 with
antialiasing before the classifier.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from torch import Tensor, nn

__all__ = [
    "GarmentClassifier",
    "CLASSES",
    "frechet_distance",
    "gaussian_frechet",
    "load_classifier",
    "to_input",
]

#: Fashion-MNIST's ten classes, in label order.
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)


class GarmentClassifier(nn.Module):
    """Two conv blocks (32, 64 channels, 3x3, max-pool) and a 128-unit feature layer; 28x28 gray input
    in [0, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def features(self, x: Tensor) -> Tensor:
        """The 128-d penultimate features of ``[B, 1, 28, 28]`` inputs."""
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def to_input(images01: Tensor) -> Tensor:
    """``[B, 3, H, W]`` in [0, 1] -> ``[B, 1, 28, 28]``: channel mean, antialiased bilinear resize."""
    gray = images01.float().mean(1, keepdim=True)
    if gray.shape[-2:] != (28, 28):
        gray = nn.functional.interpolate(
            gray, size=(28, 28), mode="bilinear", antialias=True, align_corners=False
        )
    return gray.clamp(0, 1)


def classifier_path() -> Path:
    from psld.models.builtin import BUILTIN_MODELS

    return BUILTIN_MODELS["fashion-mnist"].parent / "fashion-mnist-classifier" / "classifier.safetensors"


def load_classifier(path: str | Path | None = None) -> GarmentClassifier:
    """The shipped classifier (fp16 on disk, float32 in memory), in eval mode."""
    from safetensors.torch import load_file

    model = GarmentClassifier()
    model.load_state_dict({k: v.float() for k, v in load_file(str(path or classifier_path())).items()})
    return model.eval().requires_grad_(False)


def gaussian_frechet(mu_a: np.ndarray, cov_a: np.ndarray, mu_b: np.ndarray, cov_b: np.ndarray) -> float:
    """``||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^{1/2})`` (the imaginary round-off dropped)."""
    from scipy import linalg

    root = linalg.sqrtm(cov_a @ cov_b)
    root = np.real(root)
    diff = np.asarray(mu_a) - np.asarray(mu_b)
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(root))


def frechet_distance(features_a: np.ndarray | Tensor, features_b: np.ndarray | Tensor) -> float:
    """Frechet distance between the Gaussians fitted to two feature sets ``[N, d]`` (unbiased covariances)."""
    a = np.asarray(features_a, dtype=np.float64)
    b = np.asarray(features_b, dtype=np.float64)
    return gaussian_frechet(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))
