"""Blur operators: 2-D convolution with a stated boundary model and its exact adjoint.

Boundary models (``boundary=``):

* ``"reflect"`` (the official DPS/PSLD operator): the image is extended by reflection about its edge
  pixels (``... x2 x1 | x0 x1 x2 ... | ...``, edge not repeated, as ``torch.nn.ReflectionPad2d``;
  repeated reflection when the kernel is wider than the image), then a "valid" convolution returns an
  image of the input size. ``A = K P`` with ``P`` the padding (a gather); the exact adjoint is
  ``A^T = P^T K^T``: the transposed convolution followed by folding the padded border back onto the pixels
  it was copied from (a scatter-add). The official code uses the identity as "transpose"; that is
  available only through :class:`psld.operators.OfficialTranspose`.
* ``"circular"``: periodic extension (circular convolution). ``A`` is diagonalised by the 2-D DFT.

``forward`` is a true convolution with the kernel centred at its middle tap: ``y[i, j] = sum_{u, v}
k[c + u, c' + v] x[i - u, j - v]`` (PyTorch's ``conv2d`` is a correlation, so the stored weights are the
flipped kernel). The official code correlates (``conv2d`` with the kernel as weights); ``correlate=True``
does the same. For point-symmetric kernels such as the Gaussian the two agree; for a motion kernel taken
from the official code, pass ``correlate=True`` (or the flipped array). :class:`MotionBlur` correlates by
default, as the official operator does.

``pinv`` is the Moore-Penrose pseudo-inverse with singular values below ``rtol * s_max`` treated as zero
(spectral cut-off; ``rtol`` is the ``tol`` argument, default 1e-10 in float64 and 1e-5 otherwise). It is
the exact pseudo-inverse whenever no singular value falls below the cut-off, and on ``range(A)``
``||A A^+ A x - A x|| <= rtol * s_max * ||x||`` in every case. Closed forms:

* separable kernels (``GaussianBlur``, a pair ``(kv, kh)``, or a 2-D kernel of numerical rank one), either
  boundary: ``A = A_h (x) A_w`` is a Kronecker product of two 1-D operators, so its SVD is the product of
  the two 1-D SVDs (computed once, float64) and ``A^+ y = V_h [(U_h^T y U_w) / (s_h s_w^T)] V_w^T``;
* other kernels with ``"circular"``: the DFT diagonalises ``A`` (singular values ``|K(w)|``), so
  ``A^+ y = F^{-1}[Y / K]`` on the retained frequencies;
* other kernels with ``"reflect"``: CGLS on the normal equations (the base class, no cut-off; ``tol`` is
  then the stopping tolerance on ``||A^T (y - A x)|| / ||A^T y||``). CGLS converges slowly when the blur
  is ill-conditioned (random motion kernels often are): if ``max_iter`` steps do not reach ``tol``,
  ``pinv`` warns (``PinvNotConvergedWarning``) and returns the iterate, an implicitly regularised
  inverse rather than ``A^+``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from psld.operators.base import LinearOperator, as_generator, check_shape
from psld.operators.motion import motion_intensity, random_walk_motion_kernel

_BOUNDARIES = ("reflect", "circular")
_METHODS = ("auto", "direct", "fft")
#: Non-separable kernels with more taps than this use FFT convolution under ``method="auto"``.
FFT_THRESHOLD = 31 * 31


def default_rtol(dtype: torch.dtype) -> float:
    """Relative singular-value cut-off of the closed-form pseudo-inverses for inputs of ``dtype``."""
    return 1e-10 if dtype == torch.float64 else 1e-5


def _odd_size(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
        raise ValueError(f"{name} must be odd and positive, got {value!r}")
    return value


def _pad_index(n: int, p: int, boundary: str) -> Tensor:
    """Source index of each of the ``n + 2p`` padded positions along one axis."""
    i = torch.arange(-p, n + p)
    if boundary == "circular":
        return i % n
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i % period
    return torch.where(i >= n, period - i, i)


def _as_kernel(kernel, name: str = "kernel") -> Tensor:
    if not isinstance(kernel, Tensor):
        try:
            kernel = torch.as_tensor(kernel, dtype=torch.float64)
        except Exception:
            raise ValueError(f"{name} must be a 2-D tensor, got {type(kernel).__name__}") from None
    if kernel.is_complex() or not (kernel.is_floating_point() or kernel.dtype in (torch.int32, torch.int64)):
        raise ValueError(f"{name} must be a real tensor, got dtype {kernel.dtype}")
    k = kernel.detach().to("cpu", torch.float64)
    if k.dim() != 2:
        raise ValueError(f"{name} must be 2-D [kh, kw], got shape {list(k.shape)}")
    kh, kw = k.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"{name} sizes must be odd, got {kh}x{kw}")
    if not bool(torch.isfinite(k).all()):
        raise ValueError(f"{name} must be finite")
    return k.clone()


class Convolution(LinearOperator):
    """Channel-wise (depthwise, same kernel in every channel) 2-D convolution on ``(C, H, W)`` images.

    ``kernel`` is a 2-D tensor ``[kh, kw]`` with odd sizes, or a pair of 1-D tensors ``(kv, kh)`` for the
    separable kernel ``outer(kv, kh)`` (applied as two 1-D convolutions; a 2-D kernel of numerical rank one
    is split the same way). ``boundary`` is ``"reflect"`` or ``"circular"`` and ``pinv`` is described in the
    module docstring. ``method`` picks ``"direct"`` (``conv2d``) or ``"fft"`` convolution for non-separable
    kernels; ``"auto"`` uses FFT above ``FFT_THRESHOLD`` taps. The kernel is ``.kernel`` (float64,
    ``[kh, kw]``, as given) and ``.separable`` says whether the separable path is used.

    ``correlate=False`` (default) applies ``kernel`` as a true convolution (module docstring);
    ``correlate=True`` applies it as a correlation, ``y[i, j] = sum_{u, v} k[c + u, c' + v] x[i + u, j + v]``:
    PyTorch's ``conv2d`` and the official code's convention, i.e. convolution with the flipped kernel. Use it
    for a kernel array taken from the official code. ``.correlate`` records the choice.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        kernel: Tensor | tuple[Tensor, Tensor],
        *,
        boundary: str = "reflect",
        method: str = "auto",
        correlate: bool = False,
    ):
        shape = check_shape("in_shape", in_shape)
        if len(shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W) for {type(self).__name__}, got {shape!r}")
        if boundary not in _BOUNDARIES:
            raise ValueError(f"boundary must be one of {_BOUNDARIES}, got {boundary!r}")
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        if isinstance(kernel, (tuple, list)):
            if len(kernel) != 2:
                raise ValueError("kernel must be a 2-D tensor or a pair (kv, kh) of 1-D tensors")
            kv = torch.as_tensor(kernel[0]).detach().to("cpu", torch.float64).flatten()
            kh_ = torch.as_tensor(kernel[1]).detach().to("cpu", torch.float64).flatten()
            k2 = _as_kernel(torch.outer(kv, kh_))
            sep = (kv.clone(), kh_.clone())
        else:
            k2 = _as_kernel(kernel)
            sep = _split_rank_one(k2)  # type: ignore[assignment]
        if not isinstance(correlate, bool):
            raise ValueError(f"correlate must be True or False, got {correlate!r}")
        super().__init__(shape, shape)
        _, h, w = shape
        kh, kw = k2.shape
        self.boundary = boundary
        self.kernel = k2
        self.correlate = correlate
        self.separable = sep is not None
        self._pad = (kh // 2, kw // 2)
        self._idx_h = _pad_index(h, kh // 2, boundary)
        self._idx_w = _pad_index(w, kw // 2, boundary)
        # conv2d correlates: store the flipped kernel so that forward is a true convolution (or the
        # kernel itself for correlate=True); k2 becomes the convolution kernel of the operator.
        if correlate:
            k2 = k2.flip(0, 1)
            sep = None if sep is None else (sep[0].flip(0), sep[1].flip(0))
        self._weight = k2.flip(0, 1)
        self._sep_weight = None if sep is None else (sep[0].flip(0), sep[1].flip(0))
        use_fft = method == "fft" or (method == "auto" and kh * kw > FFT_THRESHOLD)
        self.method = "fft" if use_fft and sep is None else "direct"
        self._svd = None
        self._spectrum = None
        if sep is not None:
            # A = A_h (x) A_w: SVD of the two 1-D operators (float64, once).
            self._svd = (
                torch.linalg.svd(_matrix_1d(h, self._sep_weight[0], self._idx_h)),
                torch.linalg.svd(_matrix_1d(w, self._sep_weight[1], self._idx_w)),
            )
        elif boundary == "circular":
            rows = (torch.arange(kh) - kh // 2) % h
            cols = (torch.arange(kw) - kw // 2) % w
            tmp = torch.zeros(h, kw, dtype=torch.float64).index_add(0, rows, k2)
            wrapped = torch.zeros(h, w, dtype=torch.float64).index_add(1, cols, tmp)
            self._spectrum = torch.fft.rfft2(wrapped)

    # ------------------------------------------------------------------ helpers
    def _flat(self, t: Tensor) -> Tensor:
        c, h, w = self.in_shape
        return t.reshape(t.shape[0] * c, 1, h, w)

    def _valid_conv(self, z: Tensor) -> Tensor:
        """Correlate the padded ``z`` [N, 1, Hp, Wp] with the stored weights, keeping the valid part."""
        if self._sep_weight is not None:
            wv, wh = (self._like(t, z) for t in self._sep_weight)
            z = F.conv2d(z, wv.reshape(1, 1, -1, 1))
            return F.conv2d(z, wh.reshape(1, 1, 1, -1))
        wt = self._like(self._weight, z)
        if self.method == "direct":
            return F.conv2d(z, wt[None, None])
        _, h, w = self.in_shape
        hp, wp = z.shape[-2:]
        wf = torch.fft.rfft2(wt, s=(hp, wp))
        out = torch.fft.irfft2(torch.fft.rfft2(z) * wf.conj(), s=(hp, wp))
        return out[..., :h, :w]

    def _valid_conv_t(self, y: Tensor) -> Tensor:
        """Adjoint of :meth:`_valid_conv`: ``[N, 1, H, W] -> [N, 1, Hp, Wp]`` (transposed convolution)."""
        if self._sep_weight is not None:
            wv, wh = (self._like(t, y) for t in self._sep_weight)
            y = F.conv_transpose2d(y, wh.reshape(1, 1, 1, -1))
            return F.conv_transpose2d(y, wv.reshape(1, 1, -1, 1))
        wt = self._like(self._weight, y)
        if self.method == "direct":
            return F.conv_transpose2d(y, wt[None, None])
        ph, pw = self._pad
        hp, wp = y.shape[-2] + 2 * ph, y.shape[-1] + 2 * pw
        wf = torch.fft.rfft2(wt, s=(hp, wp))
        return torch.fft.irfft2(torch.fft.rfft2(y, s=(hp, wp)) * wf, s=(hp, wp))

    def _pad_gather(self, z: Tensor) -> Tensor:
        ih = self._idx_h.to(z.device)
        iw = self._idx_w.to(z.device)
        return z.index_select(-2, ih).index_select(-1, iw)

    def _pad_fold(self, z: Tensor) -> Tensor:
        """Adjoint of :meth:`_pad_gather`: add every padded position back onto its source pixel."""
        _, h, w = self.in_shape
        ih = self._idx_h.to(z.device)
        iw = self._idx_w.to(z.device)
        n, _, _, wp = z.shape
        rows = z.new_zeros(n, 1, h, wp).index_add(2, ih, z)
        return z.new_zeros(n, 1, h, w).index_add(3, iw, rows)

    # ------------------------------------------------------------------ the operator
    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        z = self._valid_conv(self._pad_gather(self._flat(x)))
        return z.reshape(x.shape)

    def adjoint(self, y: Tensor) -> Tensor:
        self.check_output(y)
        z = self._pad_fold(self._valid_conv_t(self._flat(y)))
        return z.reshape(y.shape)

    def singular_values(self) -> Tensor:
        """All singular values of ``A`` (one channel), float64, for the closed-form cases."""
        if self._svd is not None:
            (_, sh, _), (_, sw, _) = self._svd
            return (sh[:, None] * sw[None, :]).flatten().sort(descending=True).values
        if self._spectrum is not None:
            _, h, w = self.in_shape
            full = torch.fft.fft2(torch.fft.irfft2(self._spectrum, s=(h, w)))
            return full.abs().flatten().sort(descending=True).values
        raise ValueError("singular_values is available only for separable kernels or boundary='circular'")

    def pinv(self, y: Tensor, *, tol: float | None = None, max_iter: int = 500) -> Tensor:
        """``A^+ y``: singular values below ``tol * s_max`` cut off (closed forms), or CGLS (see module)."""
        if self._svd is None and self._spectrum is None:
            return super().pinv(y, tol=tol, max_iter=max_iter)
        self.check_output(y)
        rtol = default_rtol(y.dtype) if tol is None else float(tol)
        if not (rtol >= 0 and math.isfinite(rtol)):
            raise ValueError(f"tol must be finite and >= 0, got {tol!r}")
        _, h, w = self.in_shape
        if self._svd is not None:
            (uh, sh, vht), (uw, sw, vwt) = self._svd
            s = sh[:, None] * sw[None, :]
            inv = torch.where(s > rtol * s.max(), 1.0 / s, torch.zeros_like(s))
            uh, uw, vht, vwt, inv = (self._like(t, y) for t in (uh, uw, vht, vwt, inv))
            z = torch.matmul(torch.matmul(uh.transpose(0, 1), y), uw) * inv
            return torch.matmul(torch.matmul(vht.transpose(0, 1), z), vwt)
        cdtype = torch.complex128 if y.dtype == torch.float64 else torch.complex64
        k = self._spectrum
        mag = k.abs()
        filt = torch.where(
            mag > rtol * mag.max(), 1.0 / torch.where(mag > 0, k, torch.ones_like(k)), torch.zeros_like(k)
        )
        filt = filt.to(device=y.device, dtype=cdtype)
        return torch.fft.irfft2(torch.fft.rfft2(y) * filt, s=(h, w)).to(y.dtype)

    def __repr__(self) -> str:
        kh, kw = self.kernel.shape
        return (
            f"{type(self).__name__}(in_shape={self.in_shape}, kernel={kh}x{kw}, boundary={self.boundary!r})"
        )


def _split_rank_one(k: Tensor) -> tuple[Tensor, Tensor] | None:
    """``(kv, kh)`` with ``outer(kv, kh) == k`` when ``k`` has numerical rank one, else ``None``."""
    u, s, vt = torch.linalg.svd(k)
    if s[0] == 0 or (s.numel() > 1 and s[1] > 1e-13 * s[0]):
        return None
    r = s[0].sqrt()
    return u[:, 0] * r, vt[0] * r


def _matrix_1d(n: int, weight: Tensor, idx: Tensor) -> Tensor:
    """The ``[n, n]`` matrix of one axis: gather-pad with ``idx`` then correlate with ``weight`` (valid)."""
    eye = torch.eye(n, dtype=torch.float64)[:, None, :]  # column j of the identity as a signal
    cols = F.conv1d(eye.index_select(-1, idx), weight.reshape(1, 1, -1))[:, 0, :]  # [j, i] = A[i, j]
    return cols.transpose(0, 1).contiguous()


class Blur(Convolution):
    """Convolution with a user-given kernel (e.g. a measured point-spread function), used as given.

    ``kernel`` must be 2-D with odd sizes, finite, with a non-negative sum; it is not normalised. It is
    applied as a true convolution, or as a correlation (``conv2d``, the official code's convention) with
    ``correlate=True``; the two differ for kernels that are not point-symmetric (motion blur).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        kernel: Tensor,
        *,
        boundary: str = "reflect",
        method: str = "auto",
        correlate: bool = False,
    ):
        k = _as_kernel(kernel)
        if float(k.sum()) < 0:
            raise ValueError(f"kernel must have a non-negative sum, got {float(k.sum()):.6g}")
        super().__init__(in_shape, k, boundary=boundary, method=method, correlate=correlate)


def gaussian_kernel_1d(kernel_size: int, sigma: float, truncate: float | None = None) -> Tensor:
    """Sampled Gaussian ``exp(-(i - c)^2 / (2 sigma^2))`` on ``kernel_size`` taps, normalised to sum 1.

    With ``truncate`` the taps farther than ``int(truncate * sigma + 0.5)`` from the centre are zeroed
    before normalising. With ``truncate=4`` this is the official kernel only when ``kernel_size`` holds
    the whole radius (``kernel_size >= 2 int(4 sigma + 0.5) + 1``); on smaller grids the official kernel
    folds its tails back instead (:func:`official_gaussian_kernel_1d`).
    """
    c = kernel_size // 2
    i = torch.arange(kernel_size, dtype=torch.float64) - c
    g = torch.exp(-(i**2) / (2.0 * sigma**2))
    if truncate is not None:
        g = torch.where(i.abs() <= int(truncate * sigma + 0.5), g, torch.zeros_like(g))
    return g / g.sum()


def official_gaussian_kernel_1d(kernel_size: int, sigma: float, truncate: float = 4.0) -> Tensor:
    """One axis of the official Gaussian kernel: ``scipy.ndimage.gaussian_filter`` of a centred delta.

    The official kernel is ``gaussian_filter(delta, sigma)`` on the ``kernel_size x kernel_size`` grid,
    which is ``outer(f, f)`` with ``f`` this function: the normalised Gaussian of radius
    ``r = int(truncate * sigma + 0.5)`` (scipy's default ``truncate=4``), correlated with the delta under
    scipy's ``"reflect"`` boundary (``d c b a | a b c d | d c b a``). When the grid holds the radius
    (``kernel_size >= 2r + 1``, e.g. 121 and 61 taps at sigma 3) ``f`` is the truncated Gaussian padded
    with zeros; on a smaller grid the tails fold back onto the grid (by up to 0.3 of the peak at 9 taps,
    sigma 3). Either way ``f`` sums to 1 (each tap lands on the centre exactly once per ``kernel_size``
    window), and the official code uses it as it comes.
    """
    r = int(truncate * sigma + 0.5)
    j = torch.arange(-r, r + 1, dtype=torch.float64)
    w = torch.exp(-0.5 * j**2 / sigma**2)
    w = w / w.sum()
    n = kernel_size
    pos = (torch.arange(n)[:, None] + torch.arange(-r, r + 1)[None, :]) % (2 * n)
    pos = torch.where(pos >= n, 2 * n - 1 - pos, pos)  # half-sample reflection, repeated as needed
    return (w[None, :] * (pos == n // 2)).sum(1)


class GaussianBlur(Convolution):
    """Isotropic Gaussian blur, applied separably (two 1-D convolutions).

    The 2-D kernel is ``outer(g, g)``: by default ``g`` from :func:`gaussian_kernel_1d` (sums to 1);
    with ``official=True`` the official code's kernel, ``scipy.ndimage.gaussian_filter`` of a delta on
    the grid (:func:`official_gaussian_kernel_1d`: truncated at 4 sigma, then whatever the grid holds).
    Official settings: kernel 61, sigma 3.0 (LDM, 256 px); kernel 121, sigma 3.0 (SD, 512 px). The kernel
    is symmetric, so convolution and the official correlation agree.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        kernel_size: int = 61,
        sigma: float = 3.0,
        boundary: str = "reflect",
        *,
        truncate: float | None = None,
        official: bool = False,
    ):
        kernel_size = _odd_size("kernel_size", kernel_size)
        try:
            sigma = float(sigma)
        except (TypeError, ValueError):
            raise ValueError(f"sigma must be a positive number, got {sigma!r}") from None
        if not (sigma > 0 and math.isfinite(sigma)):
            raise ValueError(f"sigma must be finite and > 0, got {sigma!r}")
        if truncate is not None and not (float(truncate) > 0):
            raise ValueError(f"truncate must be > 0 or None, got {truncate!r}")
        if official and truncate is not None:
            raise ValueError("official=True fixes truncate at 4 (scipy's default); do not pass truncate")
        if official:
            g = official_gaussian_kernel_1d(kernel_size, sigma)
        else:
            g = gaussian_kernel_1d(kernel_size, sigma, truncate)
        super().__init__(in_shape, (g, g), boundary=boundary)
        self.sigma = sigma
        self.kernel_size = kernel_size
        self.official = bool(official)


def motion_kernel(kernel_size: int, intensity: float, seed: int | torch.Generator | None = 0) -> Tensor:
    """A random motion-blur kernel ``[kernel_size, kernel_size]`` (float64, non-negative, sums to 1).

    A camera path is simulated as a smooth random walk of constant speed: the heading starts at a uniform
    random angle and turns with a random constant rate plus an integrated Brownian term, both scaled by
    ``intensity``; the path length grows from 0.6 to 2 kernel radii with ``intensity``. The path is centred
    on its centroid, shrunk if needed to fit in the kernel, sampled at sub-pixel steps and rasterised with
    bilinear weights. ``intensity = 0`` gives a short straight streak; 1 gives long, curved ones.
    """
    kernel_size = _odd_size("kernel_size", kernel_size)
    intensity = motion_intensity(intensity)
    g = as_generator(seed)
    radius = (kernel_size - 1) / 2
    k = torch.zeros(kernel_size * kernel_size, dtype=torch.float64)
    if radius == 0:
        k[0] = 1.0
        return k.reshape(1, 1)
    n = 16 * kernel_size
    dt = 1.0 / n
    theta0 = 2 * math.pi * float(torch.rand((), generator=g, dtype=torch.float64))
    rate = float(torch.randn((), generator=g, dtype=torch.float64))
    omega = torch.cumsum(torch.randn(n, generator=g, dtype=torch.float64) * math.sqrt(dt), 0)
    t = torch.arange(n, dtype=torch.float64) * dt
    theta = theta0 + intensity * (math.pi * rate * t + 2 * math.pi * torch.cumsum(omega * dt, 0))
    length = (0.3 + 0.7 * intensity) * 2 * radius
    pts = torch.stack([torch.sin(theta), torch.cos(theta)], 1).cumsum(0) * (length * dt)
    pts = pts - pts.mean(0)
    extent = float(pts.abs().max())
    if extent > radius:
        pts = pts * (radius / extent)
    pts = (pts + radius).clamp(0.0, 2 * radius)  # (row, col) in pixel coordinates
    base = pts.floor().clamp(max=2 * radius - 1)
    frac = pts - base
    r0, c0 = base[:, 0].long(), base[:, 1].long()
    fr, fc = frac[:, 0], frac[:, 1]
    corners = ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc))
    for dr, dc, wgt in corners:
        k.index_add_(0, (r0 + dr) * kernel_size + (c0 + dc), wgt)
    k = k.reshape(kernel_size, kernel_size)
    return k / k.sum()


class MotionBlur(Convolution):
    """Blur with a seeded random motion kernel; the drawn kernel is ``.kernel``.

    ``kind="official"`` (default) draws it with the official generator's algorithm and parameters
    (:func:`psld.operators.motion.random_walk_motion_kernel`, the ``motionblur`` package's random walk), and
    with ``correlate=True`` (default) applies it by correlation as the official operator does, so the
    operators have the official distribution (official settings: kernel 61 LDM / 121 SD, intensity 0.5).
    The same seed does not give the official code's kernel: the random streams differ.
    ``kind="smooth"`` uses ``psld``'s own smooth-path generator (:func:`motion_kernel`).
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        kernel_size: int = 61,
        intensity: float = 0.5,
        *,
        seed: int | torch.Generator | None = 0,
        boundary: str = "reflect",
        method: str = "auto",
        kind: str = "official",
        correlate: bool = True,
    ):
        if kind == "official":
            k = random_walk_motion_kernel(_odd_size("kernel_size", kernel_size), intensity, seed)
        elif kind == "smooth":
            k = motion_kernel(kernel_size, intensity, seed)
        else:
            raise ValueError(f"kind must be 'official' or 'smooth', got {kind!r}")
        super().__init__(in_shape, k, boundary=boundary, method=method, correlate=correlate)
        self.kernel_size = kernel_size
        self.intensity = float(intensity)
        self.kind = kind
