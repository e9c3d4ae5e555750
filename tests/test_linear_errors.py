"""Bad input to linear_model raises ValueError naming the argument (no deep traceback, no silent result)."""

import pytest
import torch

import linear_model as lm

F64 = torch.float64
S = lm.random_subspace(6, 2, seed=0)
A = lm.gaussian_matrix(3, 6, seed=1)
RANK_DEFICIENT = torch.cat([S[:, :1], 2 * S[:, :1]], 1)


@pytest.mark.parametrize(
    "call,match",
    [
        # autoencoders and bases
        (lambda: lm.SubspaceAutoencoder(RANK_DEFICIENT), r"S must have full column rank"),
        (lambda: lm.SubspaceAutoencoder(torch.randn(3, 5, dtype=F64)), r"S has k=5 columns but only d=3"),
        (
            lambda: lm.SubspaceAutoencoder(torch.randn(6, dtype=F64)),
            r"S must be a non-empty \[d, k\] or \[B, d, k\] matrix",
        ),
        (lambda: lm.SubspaceAutoencoder(torch.randn(1, 2, 6, 2, dtype=F64)), r"S must be"),
        (lambda: lm.SubspaceAutoencoder(d=3, k=5), r"k must be <= d"),
        (lambda: lm.SubspaceAutoencoder(d=3), r"give S, or both d and k"),
        (lambda: lm.SubspaceAutoencoder(S, k=3), r"k=3 does not match S"),
        (lambda: lm.random_subspace(4, 0), r"k must be an int >= 1"),
        (lambda: lm.random_subspace(4.5, 2), r"d must be an int"),
        (lambda: lm.SubspaceAutoencoder(S).decode(torch.ones(3, dtype=F64)), r"z must have last dimension 2"),
        (lambda: lm.SubspaceAutoencoder(S).encode(torch.ones(5, dtype=F64)), r"x must have last dimension 6"),
        (
            lambda: lm.SubspaceAutoencoder(d=6, k=2, batch=3).decode(torch.ones(4, 2, dtype=F64)),
            r"z must have shape \[3, \.\.\., 2\]",
        ),
        (lambda: lm.OvercompleteAutoencoder(S, m=-1), r"m must be an int >= 0"),
        (lambda: lm.OvercompleteAutoencoder(RANK_DEFICIENT, m=2), r"S must have full column rank"),
        (lambda: lm.coordinate_basis(4, 2, support=torch.tensor([1, 1])), r"support must hold 2 distinct"),
        (lambda: lm.SubspaceAutoencoder(S).sample(0), r"n must be an int >= 1"),
        (
            lambda: lm.SubspaceAutoencoder(S).sample(2, cov=torch.tensor([[1.0, 2.0], [0.0, 1.0]])),
            r"cov must be symmetric",
        ),
        # priors
        (lambda: lm.GaussianLatentPrior(), r"give k, mean or cov"),
        (lambda: lm.GaussianLatentPrior(torch.zeros(3), torch.eye(2)), r"disagree on the latent dimension"),
        (lambda: lm.GaussianLatentPrior(cov=-torch.eye(2)), r"cov must be positive semi-definite"),
        (lambda: lm.GaussianLatentPrior(k=2, alphas_cumprod=torch.tensor([0.5, 1.0])), r"alphas_cumprod"),
        (lambda: lm.GaussianLatentPrior(k=2).eps(torch.zeros(1, 2), 1000), r"t must be in \[0, 999\]"),
        (lambda: lm.GaussianLatentPrior(k=2).eps(torch.zeros(1, 3), 0), r"z_t must have last dimension k=2"),
        (lambda: lm.PixelSubspacePrior(RANK_DEFICIENT), r"S must have full column rank"),
        (lambda: lm.PixelSubspacePrior(S, ridge=-1.0), r"ridge must be >= 0"),
        (lambda: lm.PixelSubspacePrior(S).eps(torch.zeros(2, 5), 0), r"x_t must have last dimension d=6"),
        (lambda: lm.ridge_gains(0.0, 0.1), r"alpha must be in \(0, 1\]"),
        # measurements
        (lambda: lm.row_mask_matrix(7, 6), r"l must be <= d"),
        (lambda: lm.gaussian_matrix(0, 6), r"l must be an int >= 1"),
        (lambda: lm.measure(A, torch.ones(6, dtype=F64), -0.1), r"sigma_y must be >= 0"),
        (lambda: lm.measure(A, torch.ones(5, dtype=F64), 0.1), r"x0 must have last dimension 6"),
        (lambda: lm.isotropic_matrix(S, 1.0, 1), r"l must be >= k=2"),
        (lambda: lm.isotropic_matrix(S, -1.0, 3), r"s must be > 0"),
        (lambda: lm.isotropic_matrix(RANK_DEFICIENT, 1.0, 3), r"S must have full column rank"),
        (lambda: lm.latent_gram(A, torch.eye(5, 2, dtype=F64)), r"A has 6 columns but S has 5 rows"),
        (
            lambda: lm.spectrum(lm.gaussian_matrix(3, 6, batch=2), lm.random_subspace(6, 2, batch=3)),
            r"instance batch sizes differ \(A: 2, S: 3\)",
        ),
        # posteriors
        (lambda: lm.exact_posterior(A, S, torch.ones(3), -1.0), r"sigma_y must be >= 0"),
        (lambda: lm.exact_posterior(A, S, torch.ones(4), 0.1), r"y must have last dimension l=3"),
        (lambda: lm.exact_posterior(A, S, torch.ones(3), 0.1, cov=torch.eye(3)), r"cov must be \[2, 2\]"),
        (lambda: lm.exact_posterior(A, S, torch.ones(3), 0.1, mean=torch.ones(3)), r"mean must be \[2\]"),
        (lambda: lm.least_squares(A, RANK_DEFICIENT, torch.ones(3)), r"A S must have full column rank"),
        (lambda: lm.least_squares(A[:1], S, torch.ones(1)), r"A S must have full column rank k=2"),
        (lambda: lm.oracle_sample(A, S, torch.ones(3), 0.0, None, 10), r"sigma_y must be > 0"),
        (lambda: lm.oracle_sample(A, S, torch.ones(3), 0.1, None, 0), r"n must be an int >= 1"),
        (lambda: lm.ridge_posterior(A, torch.eye(5), torch.ones(3), 0.1), r"Sigma_x must be \[6, 6\]"),
        # predictions and two-state
        (lambda: lm.mask_recovery_probability(10, 11, 10), r"k must be <= d"),
        (lambda: lm.mask_recovery_probability(10, 2, 11), r"l must be <= d"),
        (lambda: lm.least_squares_risk(torch.ones(2), -0.5), r"sigma_y must be >= 0"),
        (lambda: lm.contraction_rate(torch.ones(2), float("nan"), 0.0), r"omega must be finite"),
        (
            lambda: lm.eigen_recursion(torch.ones(2), torch.ones(2), torch.ones(3), 0.1, 0.0, ddpm=True),
            r"alphas_cumprod must lie in \(0, 1\)",
        ),
        (lambda: lm.optimal_latent_denoiser(1.5, torch.eye(2)), r"beta must be in \(0, 1\)"),
        (lambda: lm.fit_linear_denoiser(torch.ones(5, 2), torch.ones(4, 2)), r"z0 and z1 must be"),
    ],
)
def test_bad_input_raises_value_error_naming_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_rank_deficient_data_is_fine_where_full_rank_is_not_required():
    # exact_posterior handles rank(AS) < k (prior on the null space) instead of raising
    post = lm.exact_posterior(A[:1], S, torch.ones(1, dtype=F64), 0.0)
    assert int(post.rank) == 1
    assert lm.spectrum(A[:1], S).kappa == float("inf")
