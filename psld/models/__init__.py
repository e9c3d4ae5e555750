"""diffusers model adapters and loading (diffusers itself is imported lazily, inside functions)."""

from psld.models.adapters import KLDecoder, KLEncoder, UNetPrior, VQDecoder, VQEncoder
from psld.models.loading import LatentModel, load_model

__all__ = ["KLDecoder", "KLEncoder", "LatentModel", "UNetPrior", "VQDecoder", "VQEncoder", "load_model"]
