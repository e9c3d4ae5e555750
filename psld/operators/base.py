"""The linear-operator contract shared by every measurement family.

An operator ``A`` maps a batch ``x`` of shape ``[B, *in_shape]`` to ``[B, *out_shape]``. Subclasses
implement :meth:`forward` and :meth:`adjoint`; everything else has a generic definition:

* ``gram(x)  = A^T A x``
* ``pinv(y)  = A^+ y``, the minimum-norm least-squares solution for ANY ``y`` (also ``y`` outside
  ``range(A)``, e.g. a noisy measurement of a rank-deficient ``A``), by CGLS (:func:`cgls`); families
  with a closed form override it.
* ``glue(x, y, "adjoint") = A^T y + (I - A^T A) x``  (PSLD's gluing target; a projection iff ``A A^T = I``)
* ``glue(x, y, "pinv")    = x + A^+ (y - A x)``     (the orthogonal projection onto the least-squares set
  ``{x: A^T A x = A^T y}``, which is ``{A x = y}`` when ``y`` is in ``range(A)``)

Operators are immutable: their tensors are created at construction and cast to the input's device and
dtype on each call (see :meth:`_like`). Randomness is drawn once, at construction, from a seed or a
``torch.Generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from psld.warn import warn_at_caller

GlueMode = str  # "adjoint" | "pinv"


def as_generator(seed: int | torch.Generator | None) -> torch.Generator:
    """A CPU ``torch.Generator`` from a seed, an existing generator, or ``None`` (seed 0)."""
    if isinstance(seed, torch.Generator):
        return seed
    if seed is None:
        seed = 0
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"seed must be an int or a torch.Generator, got {type(seed).__name__}")
    return torch.Generator().manual_seed(seed)


def check_shape(name: str, shape: Sequence[int]) -> tuple[int, ...]:
    """Validate a shape argument (positive ints) and return it as a tuple."""
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of positive ints, got {shape!r}") from None
    if len(shape) == 0 or any(s <= 0 for s in shape):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {shape!r}")
    return shape


class LinearOperator:
    """Base class: a linear map ``A: R^{in_shape} -> R^{out_shape}`` acting on batches.

    >>> import torch
    >>> from psld.operators import Denoising
    >>> A = Denoising((1, 2, 2))
    >>> x = torch.ones(3, 1, 2, 2)
    >>> bool(torch.equal(A(x), x)) and A.out_shape == (1, 2, 2)
    True
    """

    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    #: True when A^T = A^+ (A is a partial isometry, A A^T A = A): masks, rows of a matrix that are
    #: orthonormal; then the "adjoint" glue is the "pinv" one, the projection onto {A x = y}. (For a mask,
    #: A A^T = A is not I: the flag says what the glue needs, not that the rows are orthonormal.)
    adjoint_is_pinv: bool = False
    #: True when A is diagonal with entries 0 and 1 in the pixel basis (masks, the identity): such factors
    #: commute, so a composition of them is one too (and its adjoint is its pseudo-inverse).
    diagonal_projection: bool = False

    def __init__(self, in_shape: Sequence[int], out_shape: Sequence[int]):
        object.__setattr__(self, "in_shape", check_shape("in_shape", in_shape))
        object.__setattr__(self, "out_shape", check_shape("out_shape", out_shape))

    # Immutability: attributes are fixed once the subclass constructor has finished.
    def __setattr__(self, name, value):
        if getattr(self, "_constructed", False):
            raise AttributeError(f"{type(self).__name__} is immutable; build a new operator instead")
        object.__setattr__(self, name, value)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        def wrapped(self, *args, __init=init, **kw):
            __init(self, *args, **kw)
            if type(self).__init__ is wrapped:  # the most-derived constructor has finished
                object.__setattr__(self, "_constructed", True)

        wrapped.__doc__ = init.__doc__
        wrapped.__wrapped__ = init
        cls.__init__ = wrapped

    # ------------------------------------------------------------------ the two maps subclasses define
    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def adjoint(self, y: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    # ------------------------------------------------------------------ generic derived maps
    def __call__(self, x: Tensor) -> Tensor:
        return self.forward(x)

    def gram(self, x: Tensor) -> Tensor:
        """``A^T A x``."""
        return self.adjoint(self.forward(x))

    def pinv(self, y: Tensor, *, tol: float | None = None, max_iter: int = 500) -> Tensor:
        """``A^+ y`` by CGLS (conjugate gradients on the normal equations ``A^T A x = A^T y``, from 0).

        Stops, per sample, once ``||A^T (y - A x)|| <= tol * ||A^T y||`` (default ``tol``: 1e-12 in
        float64, 1e-6 otherwise) or after ``max_iter`` iterations, warning (``PinvNotConvergedWarning``)
        when some sample did not meet ``tol``. See :func:`cgls` for the error bound.
        """
        self.check_output(y)
        x, ratio = cgls(self.forward, self.adjoint, y, tol=tol, max_iter=max_iter)
        if not bool((ratio <= _resolve_tol(tol, y.dtype)).all()):
            warn_at_caller(  # at the user's line, once per sampling run (psld.warn)
                f"{type(self).__name__}.pinv: CGLS stopped after max_iter={max_iter} iterations with "
                f"||A^T(y - A x)|| / ||A^T y|| up to {float(ratio.max()):.2g} (tol "
                f"{_resolve_tol(tol, y.dtype):.2g}); the result is a regularised approximation of A^+ y",
                PinvNotConvergedWarning,
            )
        return x

    def glue(self, x: Tensor, y: Tensor, mode: GlueMode = "adjoint") -> Tensor:
        """PSLD's gluing image: ``A^T y + (I - A^T A) x`` ("adjoint") or ``x + A^+(y - A x)`` ("pinv")."""
        if mode == "adjoint":
            return x + self.adjoint(y - self.forward(x))
        if mode == "pinv":
            return x + self.pinv(y - self.forward(x))
        raise ValueError(f"glue mode must be 'adjoint' or 'pinv', got {mode!r}")

    # ------------------------------------------------------------------ helpers for subclasses and users
    def check_input(self, x: Tensor, name: str = "x") -> None:
        """Raise ``ValueError`` unless ``x`` has shape ``[B, *in_shape]``."""
        _check_batch(name, x, self.in_shape, type(self).__name__)

    def check_output(self, y: Tensor, name: str = "y") -> None:
        """Raise ``ValueError`` unless ``y`` has shape ``[B, *out_shape]``."""
        _check_batch(name, y, self.out_shape, type(self).__name__)

    def adjointness_error(self, x: Tensor, y: Tensor) -> Tensor:
        """``|<A x, y> - <x, A^T y>|`` per sample; zero up to round-off for an exact adjoint."""
        lhs = (self.forward(x) * y).flatten(1).sum(1)
        rhs = (x * self.adjoint(y)).flatten(1).sum(1)
        return (lhs - rhs).abs()

    @staticmethod
    def _like(t: Tensor, ref: Tensor) -> Tensor:
        """Cast a stored tensor to the device and dtype of ``ref`` (operators are dtype/device agnostic)."""
        return t.to(device=ref.device, dtype=ref.dtype)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(in_shape={self.in_shape}, out_shape={self.out_shape})"


def _check_batch(name: str, t: Tensor, shape: tuple[int, ...], owner: str) -> None:
    if not isinstance(t, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != len(shape) + 1 or tuple(t.shape[1:]) != shape:
        raise ValueError(
            f"{name} must have shape [B, {', '.join(map(str, shape))}] for {owner}, got {list(t.shape)}"
        )


class PinvNotConvergedWarning(RuntimeWarning):
    """CGLS reached ``max_iter`` before the normal-equation residual met ``tol`` (see :func:`cgls`)."""


def _resolve_tol(tol: float | None, dtype: torch.dtype) -> float:
    if tol is None:
        return 1e-12 if dtype == torch.float64 else 1e-6
    tol = float(tol)
    if not (tol >= 0 and math.isfinite(tol)):
        raise ValueError(f"tol must be finite and >= 0, got {tol!r}")
    return tol


def cgls(
    forward: Callable[[Tensor], Tensor],
    adjoint: Callable[[Tensor], Tensor],
    y: Tensor,
    *,
    tol: float | None = None,
    max_iter: int = 500,
) -> tuple[Tensor, Tensor]:
    """Minimum-norm least squares ``x = A^+ y`` by CGLS, per batch sample; returns ``(x, ratio)``.

    CGLS is conjugate gradients on ``A^T A x = A^T y`` started at ``x = 0``, written with ``A`` and
    ``A^T`` only. Its iterates stay in the Krylov space of ``A^T y`` inside ``range(A^T)``, so the limit is
    the least-squares solution of minimum norm, for every ``y`` (CG on ``A A^T u = y`` diverges when
    ``y`` has a component outside ``range(A)`` and ``A`` is rank deficient). A sample stops (is frozen)
    once ``ratio = ||A^T (y - A x)|| / ||A^T y|| <= tol`` (default 1e-12 in float64, 1e-6 otherwise);
    ``ratio`` is returned per sample (0 when ``A^T y = 0``, where ``x = 0``). Since ``x - A^+ y`` lies in
    ``range(A^T)`` and ``A^T A (x - A^+ y) = -A^T r``: ``||x - A^+ y|| <= ratio ||A^T y|| / s_min^2``,
    with ``s_min`` the smallest non-zero singular value of ``A``.
    """
    tol = _resolve_tol(tol, y.dtype)
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 0:
        raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}")
    tiny = torch.finfo(y.dtype).tiny

    def sq(t: Tensor) -> Tensor:  # per-sample squared norm, shape [B]
        return (t * t).flatten(1).sum(1)

    def bc(v: Tensor, t: Tensor) -> Tensor:  # broadcast a [B] vector against t
        return v.reshape(-1, *([1] * (t.dim() - 1)))

    r = y.clone()
    s = adjoint(r)
    x = torch.zeros_like(s)
    p = s.clone()
    gamma = sq(s)
    b = gamma.sqrt()  # ||A^T y||
    for _ in range(max_iter):
        active = gamma.sqrt() > tol * b
        if not bool(active.any()):
            break
        q = forward(p)
        qq = sq(q)
        alpha = torch.where(active & (qq > 0), gamma / qq.clamp_min(tiny), torch.zeros_like(gamma))
        x = x + bc(alpha, x) * p
        r = r - bc(alpha, r) * q
        s = adjoint(r)
        gamma_new = torch.where(active, sq(s), gamma)
        beta = gamma_new / gamma.clamp_min(tiny)
        p = torch.where(bc(active, p), s + bc(beta, p) * p, p)
        gamma = gamma_new
    ratio = torch.where(b > 0, gamma.sqrt() / b.clamp_min(tiny), torch.zeros_like(b))
    return x, ratio
