"""T13 (docs/theory.md §11): the gluing premise with a real nonlinear autoencoder (TAESD, SD latents).

Measured with the core's own adapters (:class:`psld.models.adapters.KLEncoder`/``KLDecoder``) and guidance
map (:func:`verification.fixed_point.guided_map_gradients`, :func:`~verification.fixed_point.iterate`):

* the fixed-point residual ``rho(z) = ||E(D(z)) - z|| / ||z||`` of encodings of photographs (centre crops at
  64/128/256 px) against latents off the image manifold: encodings plus Gaussian noise of ``s`` times the
  encodings' standard deviation, and random ``N(0, I)`` latents;
* one step along the PSLD glue gradient vs one LDPS (measurement) step of the same length from an
  off-manifold latent: the change of the absolute residual ``||E(D(z)) - z||`` (random directions of the
  same length as a control);
* box inpainting: 20 guided iterations (no diffusion prior) from ``E(A^T y)``, LDPS (``gamma = 0``) vs PSLD
  (official ratio ``gamma = 0.1 omega``), RMSE in the band of pixels within 3 px of the box edge.

The statements are measured findings about this autoencoder, not theorems; each row says what would make it
false. Runs at ``--thorough`` only, and only when TAESD weights are found (:mod:`verification.taesd`).
Images: ``PSLD_T13_IMAGES`` (folders of PNG/JPEG photographs, ``os.pathsep``-separated), else scikit-image's
sample photographs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor

from verification.result import CheckResult, register

NAME = "t13-taesd-gluing"
NOISE_LEVELS = (0.1, 0.3, 1.0, 3.0)
SIZES = (64, 128, 256)


def photographs(size: int, count: int) -> Tensor:
    """Up to ``count`` centre crops ``[N, 3, size, size]`` in [-1, 1] (smaller images skipped)."""
    import numpy as np

    arrays = []
    env = os.environ.get("PSLD_T13_IMAGES")
    if env:
        from PIL import Image

        files = sorted(
            f
            for folder in env.split(os.pathsep)
            for f in Path(folder).glob("*")
            if f.suffix.lower() in (".png", ".jpg")
        )
        files = [f for f in files if "_mask" not in f.name]
        arrays = (np.asarray(Image.open(f).convert("RGB")) for f in files)
    else:
        from skimage import data

        names = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "retina")
        arrays = (getattr(data, n)() for n in names)
    out = []
    for a in arrays:
        h, w = a.shape[:2]
        if h < size or w < size:
            continue
        t, left = (h - size) // 2, (w - size) // 2
        out.append(
            torch.from_numpy(a[t : t + size, left : left + size].copy()).permute(2, 0, 1).float() / 127.5 - 1
        )
        if len(out) == count:
            break
    if not out:
        raise ValueError(f"no photograph of at least {size} px found")
    return torch.stack(out)


def residual(E, D, z: Tensor, relative: bool = True) -> Tensor:
    """``||E(D(z)) - z||`` per sample (divided by ``||z||`` when ``relative``)."""
    with torch.no_grad():
        r = (E(D(z)) - z).flatten(1).norm(dim=1)
    return r / z.flatten(1).norm(dim=1) if relative else r


def fixed_point_residuals(E, D, *, count: int, seed: int = 0, sizes=SIZES, per_image: bool = False) -> dict:
    """Median ``rho`` of encodings per size, and at the first size of noisy encodings and of ``N(0, I)``
    latents (``per_image``: also every image's value, under ``"all"``)."""
    g = torch.Generator().manual_seed(seed)
    out: dict = {"on": {}, "noise": {}}
    every: dict = {}

    def keep(key, r: Tensor) -> float:
        every[key] = r.tolist()
        return float(r.median())

    for size in sizes:
        x = photographs(size, count)
        with torch.no_grad():
            z = torch.cat([E(x[i : i + 4]) for i in range(0, len(x), 4)])
        out["on"][size] = keep(f"on {size}", residual(E, D, z))
        out[f"n_{size}"] = len(x)
        if size == sizes[0]:
            scale = float(z.std())
            out["latent_std"] = scale
            for s in NOISE_LEVELS:
                zn = z + s * scale * torch.randn(z.shape, generator=g)
                out["noise"][s] = keep(f"noise {s}", residual(E, D, zn))
            out["gaussian"] = keep("gaussian", residual(E, D, torch.randn(z.shape, generator=g)))
    if per_image:
        out["all"] = every
    return out


def box_setup(x: Tensor, box: int, width: int = 3):
    """Centre box operator, ``y``, and the band of pixels within ``width`` of the box edge (both sides)."""
    from psld.operators import BoxInpainting

    size = x.shape[-1]
    op = BoxInpainting(tuple(x.shape[1:]), box=box, batch=1)
    lo, hi = (size - box) // 2, (size - box) // 2 + box
    near = torch.zeros(size, size, dtype=torch.bool)
    near[lo - width : hi + width, lo - width : hi + width] = True
    near[lo + width : hi - width, lo + width : hi - width] = False
    return op, op.forward(x), near


def glue_step(E, D, x: Tensor, *, noise: float = 1.0, eps: float = 0.02, seed: int = 0) -> dict:
    """Change of ``||E(D(z)) - z||`` (relative to its start) after one step of length ``eps ||z||`` along the
    negative glue gradient, the negative measurement (LDPS) gradient, and 4 random directions."""
    from verification.fixed_point import guided_map_gradients

    g = torch.Generator().manual_seed(seed)
    op, y, _ = box_setup(x, x.shape[-1] // 2)
    with torch.no_grad():
        z = E(x)
    z = z + noise * float(z.std()) * torch.randn(z.shape, generator=g)
    g_meas, g_glue = guided_map_gradients(z, E, D, op, y, method="psld", loss="squared")
    r0 = residual(E, D, z, relative=False)
    length = eps * z.flatten(1).norm(dim=1)

    def change(direction: Tensor) -> float:
        unit = direction / direction.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        return float(((residual(E, D, z - length.view(-1, 1, 1, 1) * unit, relative=False) - r0) / r0).mean())

    rand = [change(torch.randn(z.shape, generator=g)) for _ in range(4)]
    return dict(glue=change(g_glue), ldps=change(g_meas), random=sum(rand) / len(rand), eps=eps, noise=noise)


def boundary_error(E, D, x: Tensor, *, iters: int = 20, omega: float = 1.0) -> dict:
    """Band RMSE after ``iters`` guided iterations (norm loss), LDPS vs PSLD at ``gamma = 0.1 omega`` and
    ``gamma = omega``."""
    from verification.fixed_point import iterate

    op, y, band = box_setup(x, x.shape[-1] // 2)
    with torch.no_grad():
        z0 = E(op.adjoint(y))
    out = {}
    for label, gamma in (("ldps", 0.0), ("psld_0.1", 0.1 * omega), ("psld_1", omega)):
        z = iterate(z0.clone(), E, D, op, y, omega=omega, gamma=gamma, n=iters, method="psld", loss="norm")
        with torch.no_grad():
            xh = D(z)
        out[label] = float((xh - x)[:, :, band].pow(2).mean().sqrt())
    return out


@register(NAME, "T13: gluing with a real autoencoder (TAESD): fixed-point residual, glue step, box seam")
def check(*, level: str = "default", seed: int = 0) -> list[CheckResult]:
    from verification import taesd

    if level != "thorough":
        return [_skip("runs at --thorough only")]
    folder = taesd.taesd_folder()
    if folder is None:
        return [_skip("no TAESD weights (psld.models.builtin.taesd_path() or PSLD_TAESD)")]
    _, E, D = taesd.load(folder)
    fp = fixed_point_residuals(E, D, count=8, seed=seed)
    x = photographs(64, 4)
    step = glue_step(E, D, x, seed=seed)
    seam = boundary_error(E, D, x, iters=20)
    on = max(fp["on"].values())
    rows = [
        CheckResult(
            NAME,
            "encodings of photographs are nearer the fixed-point set of E(D(.)) than noisy or random latents "
            "(median rho = ||E(D(z)) - z||/||z||)",
            f"< rho at noise 1 sd ({fp['noise'][1.0]:.3g}) and N(0, I) ({fp['gaussian']:.3g})",
            on,
            "worst size's median on-manifold rho < both off-manifold medians; rho rises with noise >= 0.3 sd",
            bool(
                on < fp["noise"][1.0]
                and on < fp["gaussian"]
                and fp["noise"][0.3] < fp["noise"][1.0] < fp["noise"][3.0]
            ),
            fp,
        ),
        CheckResult(
            NAME,
            "finding: E(D(.)) is not idempotent on encodings (a linear/ideal autoencoder would give rho = 0)",
            "> 0.05",
            min(fp["on"].values()),
            "best size's median rho > 0.05",
            bool(min(fp["on"].values()) > 0.05),
        ),
        CheckResult(
            NAME,
            "one glue-gradient step moves an off-manifold latent (noise 1 sd) towards the fixed-point set; "
            "an LDPS step of the same length does not do better",
            "glue < 0 and glue < LDPS",
            step["glue"],
            "relative change of ||E(D(z)) - z||: glue < 0 and glue < LDPS (random directions in details)",
            bool(step["glue"] < 0 and step["glue"] < step["ldps"]),
            step,
        ),
        CheckResult(
            NAME,
            "finding: box seam (band within 3 px of the edge), 20 prior-free guided iterations: gluing at "
            "gamma = 0.1 omega does not lower the band RMSE",
            f"LDPS band RMSE {seam['ldps']:.3g}",
            seam["psld_0.1"],
            "PSLD(gamma=0.1 omega) band RMSE >= 0.95 x LDPS's (false if gluing fixes the seam here)",
            bool(seam["psld_0.1"] >= 0.95 * seam["ldps"]),
            seam,
        ),
    ]
    return rows


def _skip(reason: str) -> CheckResult:
    return CheckResult(NAME, f"skipped: {reason}", "skipped", "skipped", "n/a", True)
