"""The task registry's official operators: the Gaussian kernel at the native sizes, the correlation
convention for given kernels, the official motion-kernel generator and the official box placement."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F

from psld.operators import Blur, BoxInpainting, MotionBlur
from psld.operators.motion import random_walk_motion_kernel
from psld.tasks import get_task

F64 = torch.float64


def _scipy_kernel(k: int, sigma: float) -> torch.Tensor:
    delta = np.zeros((k, k))
    delta[k // 2, k // 2] = 1
    return torch.from_numpy(scipy.ndimage.gaussian_filter(delta, sigma=sigma))


@pytest.mark.parametrize("family,side,taps", [("sd", 512, 121), ("ldm", 256, 61)])
def test_registry_gaussian_is_the_official_kernel_at_the_native_size(family, side, taps):
    op = get_task("deblur-gaussian").build_operator((3, side, side), family=family)
    official = _scipy_kernel(taps, 3.0)
    assert op.kernel.shape == (taps, taps)
    torch.testing.assert_close(op.kernel, official, rtol=1e-14, atol=1e-16)


@pytest.mark.parametrize("side", [32, 64, 100, 257])
def test_registry_gaussian_at_other_sizes_is_the_official_construction(side):
    op = get_task("deblur-gaussian").build_operator((1, side, side), family="sd")
    torch.testing.assert_close(op.kernel, _scipy_kernel(op.kernel_size, op.sigma), rtol=1e-14, atol=1e-16)


def test_correlate_is_the_official_pad_then_conv2d():
    g = torch.Generator().manual_seed(0)
    k = torch.rand(5, 7, generator=g, dtype=F64)  # not point-symmetric
    x = torch.randn(2, 3, 12, 14, generator=g, dtype=F64)
    official = F.conv2d(F.pad(x, (3, 3, 2, 2), mode="reflect"), k.expand(3, 1, 5, 7), groups=3)
    for method in ("direct", "fft"):
        corr = Blur((3, 12, 14), k, correlate=True, method=method)
        torch.testing.assert_close(corr(x), official, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(corr(x), Blur((3, 12, 14), k.flip(0, 1), method=method)(x))
        assert corr.correlate and torch.equal(corr.kernel, k)
    conv = Blur((3, 12, 14), k)
    assert float((conv(x) - official).abs().max()) > 1e-2  # the flipped blur
    # the adjoint is still exact
    y = torch.randn_like(x)
    corr = Blur((3, 12, 14), k, correlate=True)
    lhs, rhs = (corr(x) * y).sum(), (x * corr.adjoint(y)).sum()
    assert abs(float(lhs - rhs)) <= 1e-10 * float(lhs.abs())


@pytest.mark.parametrize("boundary,mode", [("reflect", "reflect"), ("circular", "circular")])
def test_correlate_separable_kernel(boundary, mode):
    g = torch.Generator().manual_seed(2)
    k = torch.outer(torch.rand(5, generator=g, dtype=F64), torch.rand(3, generator=g, dtype=F64))
    x = torch.randn(1, 1, 9, 11, generator=g, dtype=F64)
    op = Blur((1, 9, 11), k, correlate=True, boundary=boundary)
    assert op.separable
    official = F.conv2d(F.pad(x, (1, 1, 2, 2), mode=mode), k[None, None])
    torch.testing.assert_close(op(x), official, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(op(op.pinv(op(x))), op(x), rtol=1e-9, atol=1e-10)


def test_registry_and_solve_pass_kernel_correlate():
    k = torch.rand(3, 5, generator=torch.Generator().manual_seed(1), dtype=F64)
    task = get_task("deblur-motion")
    op = task.build_operator((1, 16, 16), kernel=k, kernel_correlate=True)
    assert op.correlate and not task.build_operator((1, 16, 16), kernel=k).correlate
    with pytest.raises(ValueError, match="kernel_correlate"):
        task.build_operator((1, 16, 16), kernel=k, kernel_correlate="yes")


def test_motion_kernel_official_generator():
    a = random_walk_motion_kernel(61, 0.5, seed=3)
    assert torch.equal(a, random_walk_motion_kernel(61, 0.5, seed=torch.Generator().manual_seed(3)))
    assert not torch.equal(a, random_walk_motion_kernel(61, 0.5, seed=4))
    for size in (9, 61, 121):
        for intensity in (0.0, 0.5, 1.0):
            k = random_walk_motion_kernel(size, intensity, seed=size)
            assert k.shape == (size, size) and bool((k >= 0).all()) and abs(float(k.sum()) - 1) < 1e-12
            assert int((k > 0).sum()) > 3
    # intensity 0: one straight segment through the centre (zero heading range), so the kernel's
    # second moments are those of a thin line: the smaller principal variance stays below 1 px^2
    i = torch.arange(61, dtype=F64) - 30
    larges = []
    for s in range(6):
        k = random_walk_motion_kernel(61, 0.0, seed=s)
        m = torch.stack([(k.sum(1) * i).sum(), (k.sum(0) * i).sum()])
        cov = torch.tensor(
            [
                [(k * (i[:, None] - m[0]) ** 2).sum(), (k * (i[:, None] - m[0]) * (i[None] - m[1])).sum()],
                [(k * (i[:, None] - m[0]) * (i[None] - m[1])).sum(), (k * (i[None] - m[1]) ** 2).sum()],
            ]
        )
        small, large = torch.linalg.eigvalsh(cov).tolist()
        assert small < 1.0
        larges.append(large)
    assert max(larges) > 20.0  # long streaks occur (path length 0.75 diag U(0, 1))


def test_motion_blur_defaults_follow_the_official_operator():
    op = MotionBlur((1, 16, 16), 9, 0.5, seed=2)
    assert op.kind == "official" and op.correlate
    torch.testing.assert_close(op.kernel, random_walk_motion_kernel(9, 0.5, seed=2))
    x = torch.randn(1, 1, 16, 16, dtype=F64)
    official = F.conv2d(F.pad(x, (4, 4, 4, 4), mode="reflect"), op.kernel[None, None])
    torch.testing.assert_close(op(x), official, rtol=1e-12, atol=1e-12)
    smooth = MotionBlur((1, 16, 16), 9, 0.5, seed=2, kind="smooth")
    assert smooth.kind == "smooth"
    with pytest.raises(ValueError, match="kind"):
        MotionBlur((1, 16, 16), 9, kind="levy")


def test_box_official_placement_excludes_the_upper_bound():
    tops = set()
    for s in range(300):
        op = BoxInpainting((1, 40, 40), box=20, placement="official", margin=8, seed=s)
        top, left = op.corners[0].tolist()
        assert 8 <= top <= 11 and 8 <= left <= 11  # numpy randint(8, 12): 12 never drawn
        tops.add(top)
    assert tops == {8, 9, 10, 11}
    rand = {
        BoxInpainting((1, 40, 40), box=20, placement="random", margin=8, seed=s).corners[0, 0].item()
        for s in range(300)
    }
    assert 12 in rand  # "random" keeps the inclusive upper bound
    with pytest.raises(ValueError, match="does not fit"):
        BoxInpainting((1, 36, 36), box=20, placement="official", margin=8)


@pytest.mark.parametrize("family,side,box", [("sd", 512, 256), ("ldm", 256, 128)])
def test_registry_box_protocols(family, side, box):
    task = get_task("inpaint-box")
    centred = task.build_operator((3, side, side), family=family)
    assert centred.placement == "centre" and centred.box == (box, box)
    a = task.build_operator((3, side, side), family=family, protocol="official", seed=7)
    b = task.build_operator((3, side, side), family=family, protocol="official", seed=7)
    c = task.build_operator((3, side, side), family=family, protocol="official", seed=8)
    assert a.placement == "official" and a.margin == 16 and a.box == (box, box)
    assert torch.equal(a.mask, b.mask) and not torch.equal(a.mask, c.mask)
    top, left = a.corners[0].tolist()
    assert 16 <= top < side - box - 16 and 16 <= left < side - box - 16
    with pytest.raises(ValueError, match="protocol"):
        task.build_operator((3, side, side), protocol="paper")


def test_cli_kernel_correlate_flag():
    from psld.cli import build_parser

    args = build_parser().parse_args(["restore", "x.png", "-t", "deblur-motion", "--model", "m"])
    assert args.kernel_correlate is False
    args = build_parser().parse_args(
        ["restore", "x.png", "-t", "deblur-motion", "--model", "m", "--kernel", "k.npy", "--kernel-correlate"]
    )
    assert args.kernel_correlate is True
