"""``psld train``: a latent diffusion prior on a frozen autoencoder (see :func:`train`)."""

from psld.training.config import TrainConfig, TrainResult
from psld.training.loop import train

__all__ = ["TrainConfig", "TrainResult", "train"]
