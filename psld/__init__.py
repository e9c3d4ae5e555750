"""psld: posterior sampling with latent diffusion models for linear inverse problems."""

__version__ = "0.1.0"
