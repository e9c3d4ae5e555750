"""The linear-subspace simulator (docs/theory.md §2-§6): data ``x0 = S z0``, linear encoder/decoder, exact
Gaussian diffusion priors, exact posteriors and an exact posterior sampler, and the closed-form
predictions the theorems make. All float64 torch; every matrix may carry a leading instance batch.

>>> import torch, linear_model as lm
>>> ae = lm.SubspaceAutoencoder(d=16, k=3, seed=0)
>>> A = lm.gaussian_matrix(6, 16, seed=1)
>>> z0, x0 = ae.sample(generator=2)
>>> bool(torch.allclose(lm.least_squares(A, ae.S, lm.measure(A, x0)), z0))
True
"""

from linear_model.autoencoder import (
    LinearAutoencoder,
    LinearMap,
    OvercompleteAutoencoder,
    SubspaceAutoencoder,
    coordinate_basis,
    random_subspace,
)
from linear_model.measurements import (
    Spectrum,
    gaussian_matrix,
    isotropic_matrix,
    latent_gram,
    measure,
    row_mask_matrix,
    spectrum,
)
from linear_model.mixture import GaussianMixture, GaussianMixtureLatentPrior, mixture_posterior
from linear_model.posterior import (
    ExactPosterior,
    exact_posterior,
    least_squares,
    oracle_sample,
    ridge_posterior,
)
from linear_model.predictions import (
    RecursionTrajectory,
    best_ldps_step,
    contraction_rate,
    eigen_recursion,
    eigen_recursion_trajectory,
    expected_error,
    expected_error_ddpm,
    latent_step_bound,
    least_squares_risk,
    mask_recovery_probability,
    off_manifold_energy,
    one_shot_step,
    pixel_exact_step_bound,
    pixel_ridge_step_bound,
    posterior_mean_risk,
    recursion_coefficients,
)
from linear_model.prior import (
    Gaussian,
    GaussianLatentPrior,
    PixelSubspacePrior,
    pixel_tweedie_matrix,
    ridge_gains,
)
from linear_model.two_state import fit_linear_denoiser, optimal_latent_denoiser, optimal_pixel_denoiser

__all__ = [
    # autoencoders and bases
    "LinearMap",
    "LinearAutoencoder",
    "SubspaceAutoencoder",
    "OvercompleteAutoencoder",
    "random_subspace",
    "coordinate_basis",
    # priors
    "Gaussian",
    "GaussianLatentPrior",
    "PixelSubspacePrior",
    "ridge_gains",
    "pixel_tweedie_matrix",
    "GaussianMixture",
    "GaussianMixtureLatentPrior",
    "mixture_posterior",
    # measurements
    "gaussian_matrix",
    "row_mask_matrix",
    "isotropic_matrix",
    "latent_gram",
    "Spectrum",
    "spectrum",
    "measure",
    # posteriors
    "ExactPosterior",
    "exact_posterior",
    "least_squares",
    "oracle_sample",
    "ridge_posterior",
    # predictions
    "contraction_rate",
    "latent_step_bound",
    "best_ldps_step",
    "pixel_exact_step_bound",
    "pixel_ridge_step_bound",
    "one_shot_step",
    "recursion_coefficients",
    "RecursionTrajectory",
    "eigen_recursion",
    "eigen_recursion_trajectory",
    "expected_error",
    "expected_error_ddpm",
    "mask_recovery_probability",
    "off_manifold_energy",
    "posterior_mean_risk",
    "least_squares_risk",
    # two-state
    "optimal_latent_denoiser",
    "optimal_pixel_denoiser",
    "fit_linear_denoiser",
]
