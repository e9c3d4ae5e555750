"""``psld train``: a latent diffusion prior on a frozen autoencoder (see :func:`train`)."""

from psld.training.config import TrainConfig
from psld.training.loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "train"]
