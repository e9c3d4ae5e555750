"""The perceptual metric: Frechet distance against closed forms, the shipped classifier on shipped images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from psld.perceptual import frechet_distance, gaussian_frechet, load_classifier, to_input


def test_gaussian_frechet_closed_forms():
    mu = np.array([1.0, -2.0, 0.5])
    # equal covariances: only the means count
    cov = np.diag([1.0, 2.0, 3.0])
    assert gaussian_frechet(mu, cov, np.zeros(3), cov) == pytest.approx(mu @ mu, rel=1e-12)
    # commuting (diagonal) covariances: sum (sqrt(a) - sqrt(b))^2
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert gaussian_frechet(mu, np.diag(a), mu, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # a rotation of both covariances changes nothing
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    rot = gaussian_frechet(mu, q @ np.diag(a) @ q.T, mu, q @ np.diag(b) @ q.T)
    assert rot == pytest.approx(expected, rel=1e-8)


def test_frechet_distance_of_samples():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((20000, 4))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([0.5, 0.0, -0.5, 1.0])
    # N(0, I) vs N(shift, 4 I): ||shift||^2 + 4 * (1 - 2)^2
    d = frechet_distance(x, 2 * rng.standard_normal((20000, 4)) + shift)
    assert d == pytest.approx(shift @ shift + 4.0, rel=0.05)


def test_shipped_classifier_recognises_the_shipped_images():
    from psld.images import load_images
    from psld.models.builtin import TEST_LABELS, test_images

    x = load_images([str(p) for p in test_images()])
    with torch.no_grad():
        pred = load_classifier()(to_input(x)).argmax(1)
    accuracy = float((pred == torch.tensor(TEST_LABELS)).float().mean())
    assert accuracy >= 0.85  # 0.9375 measured; its test-set accuracy is 0.897
    # a corrupted input (noise) is not classified as the labels: the check can fail
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        wrong = load_classifier()(to_input(noise)).argmax(1)
    assert float((wrong == torch.tensor(TEST_LABELS)).float().mean()) < 0.5
