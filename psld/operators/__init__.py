"""Measurement operators: one family per file, all following :class:`LinearOperator`."""

from psld.operators.base import LinearOperator, PinvNotConvergedWarning, as_generator, cgls
from psld.operators.blur import (
    Blur,
    Convolution,
    GaussianBlur,
    MotionBlur,
    gaussian_kernel_1d,
    motion_kernel,
)
from psld.operators.denoising import Denoising
from psld.operators.destriping import Destriping
from psld.operators.inpainting import BoxInpainting, MaskOperator, RandomInpainting
from psld.operators.matrix import Compose, MatrixOperator
from psld.operators.official import OfficialTranspose
from psld.operators.resize import SuperResolution, bicubic_matrix, upsample_nearest

__all__ = [
    "LinearOperator",
    "cgls",
    "PinvNotConvergedWarning",
    "as_generator",
    "MaskOperator",
    "RandomInpainting",
    "BoxInpainting",
    "Destriping",
    "Denoising",
    "Convolution",
    "Blur",
    "GaussianBlur",
    "MotionBlur",
    "gaussian_kernel_1d",
    "motion_kernel",
    "SuperResolution",
    "bicubic_matrix",
    "upsample_nearest",
    "MatrixOperator",
    "Compose",
    "OfficialTranspose",
]
