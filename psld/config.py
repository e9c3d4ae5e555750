"""Sampler configuration and presets.

:class:`PSLDConfig` holds every switch of the one sampler core. Methods are configurations of it:

========  =====================================================  ==============================
method    guidance added to the DDIM step (gradient w.r.t. z_t)   encoder/decoder
========  =====================================================  ==============================
``dps``   ``omega * L(y, A x0_hat)``                              identity (pixel space)
``ldps``  ``omega * L(y, A D(z0_hat))``                           latent autoencoder
``gml``   ldps ``+ gamma * L(z0_hat, E(D(z0_hat)))``              latent autoencoder
``psld``  ldps ``+ gamma * L(z0_hat, E(glue(D(z0_hat), y)))``     latent autoencoder
========  =====================================================  ==============================

The solvers that followed PSLD (``resample``, ``mpgd``, ``stsl``, ``daps``, ``diffpir``) are subclasses of
:class:`PSLDConfig` with hooks, registered in :mod:`psld.methods`; :meth:`PSLDConfig.from_dict` rebuilds
any of them from :meth:`PSLDConfig.to_dict`.

``L(a, b)`` is ``||a - b||`` per sample (``loss="norm"``, the official code) or ``||a - b||^2``
(``loss="squared"``, the convention of the theorems, no factor 1/2).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import torch

METHODS = ("psld", "gml", "ldps", "dps")
LOSSES = ("norm", "squared")
GLUES = ("adjoint", "pinv", "official")
ENCODES = ("mode", "sample")
GRAD_WRT = ("zt", "z0")
SPACINGS = ("leading", "trailing", "linspace", "official")
#: where ``inpaint-box`` puts its box: centred (the paper) or the official code's random placement
BOX_PLACEMENTS = ("centre", "official")
#: training timesteps of both official model families (SD v1.5 and the FFHQ LDM)
OFFICIAL_T = 1000

#: (omega, gamma) of the official launchers (docs/official.md §4), per model family and task.
OFFICIAL_WEIGHTS: dict[str, dict[str, tuple[float, float]]] = {
    "sd": {
        "sr4": (1.0, 0.1),
        "inpaint-random": (1.0, 0.1),
        "inpaint-box": (0.1, 1e-2),
        "deblur-gaussian": (1.0, 0.1),
        "deblur-motion": (1.0, 0.1),
    },
    "ldm": {
        "sr4": (0.9, 0.1),
        "inpaint-random": (0.1, 0.1),
        "inpaint-box": (0.1, 0.1),
        "deblur-gaussian": (0.1, 0.1),
        "deblur-motion": (0.1, 0.1),
    },
}

#: Improved-default (omega, gamma) for tasks without an official launcher (unsquared norms, SD scale).
#: sr2/sr8 and destripe/denoise follow the closest official setting (SR, random inpainting); sr8
#: matches the third-party PSLD_PAG setting's ratio omega/gamma = 10.
EXTRA_WEIGHTS: dict[str, tuple[float, float]] = {
    "sr2": (1.0, 0.1),
    "sr8": (1.0, 0.1),
    "destripe": (1.0, 0.1),
    "denoise": (1.0, 0.1),
}


def _choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


_KINDS = {
    "positive int": lambda v: isinstance(v, int) and v >= 1,
    "non-negative int": lambda v: isinstance(v, int) and v >= 0,
    "finite positive number": lambda v: math.isfinite(v) and v > 0,
    "finite number >= 0": lambda v: math.isfinite(v) and v >= 0,
}


def check_fields(config: object, kind: str, *names: str) -> None:
    """Raise ``ValueError("<name> must be a <kind>, got <value>")`` for the first field of ``config``
    that is not of ``kind`` (a key of ``_KINDS``)."""
    ok = _KINDS[kind]
    for name in names:
        value = getattr(config, name)
        if not ok(value):
            raise ValueError(f"{name} must be a {kind}, got {value!r}")


@dataclass(frozen=True)
class PSLDConfig:
    """Every switch of :func:`psld.sample`. Defaults are the improved settings (docs/official.md §10).

    >>> PSLDConfig(omega=0.5).gamma
    0.1
    >>> PSLDConfig.official("sr4").num_steps
    1000
    """

    method: str = "psld"
    num_steps: int = 200
    eta: float = 0.0
    omega: float = 1.0
    gamma: float = 0.1
    loss: str = "norm"
    #: glue image: "adjoint" = A^T y + (I - A^T A) x, "pinv" = x + A^+(y - A x), "official" = the
    #: official code's pseudo-transpose (identity for masks/blur, nearest upsampling for SR).
    glue: str = "adjoint"
    encode: str = "mode"
    #: add fresh N(0, prediction_sigma^2) noise to A D(z0_hat) every step (official code: on, 0.05).
    noisy_prediction: bool = False
    prediction_sigma: float = 0.05
    #: "zt": back-propagate through the prior (PSLD/DPS); "z0": gradient w.r.t. z0_hat only (cheap).
    grad_wrt: str = "zt"
    #: diffusers' "leading"/"trailing"/"linspace", or "official": the official code's rule for any step
    #: count (:func:`psld.schedule.official_ddim_schedule`; ignores steps_offset and set_alpha_to_one)
    timestep_spacing: str = "leading"
    steps_offset: int = 0
    set_alpha_to_one: bool = True
    #: added to the timestep the prior sees (official code at 1000 steps: the UNet gets t + 1).
    model_t_offset: int = 0
    #: ``inpaint-box`` placement when :func:`psld.solve` builds the operator: "centre" (the paper), or
    #: "official" (the official code: random, 16 px margin, drawn from each image's generator).
    box_placement: str = "centre"

    def __post_init__(self) -> None:
        _choice("method", self.method, self._methods())
        _choice("loss", self.loss, LOSSES)
        _choice("glue", self.glue, GLUES)
        _choice("encode", self.encode, ENCODES)
        _choice("grad_wrt", self.grad_wrt, GRAD_WRT)
        _choice("timestep_spacing", self.timestep_spacing, SPACINGS)
        _choice("box_placement", self.box_placement, BOX_PLACEMENTS)
        if not isinstance(self.num_steps, int) or isinstance(self.num_steps, bool) or self.num_steps < 1:
            raise ValueError(f"num_steps must be a positive int, got {self.num_steps!r}")
        for name in ("eta", "omega", "gamma", "prediction_sigma"):
            value = getattr(self, name)
            real = isinstance(value, numbers.Real) and not isinstance(value, bool)
            if not (real and math.isfinite(value) and value >= 0.0):
                raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
        if not float(self.eta) <= 1.0:
            raise ValueError(f"eta must lie in [0, 1], got {self.eta!r}")
        check_fields(self, "non-negative int", "steps_offset", "model_t_offset")

    def _methods(self) -> tuple[str, ...]:
        """The ``method`` values this class accepts (a :class:`psld.hooks.MethodConfig` accepts its own)."""
        return METHODS

    @property
    def uses_glue(self) -> bool:
        """Whether the gluing term is computed (psld/gml with gamma > 0)."""
        return self.method in ("psld", "gml") and self.gamma > 0

    @property
    def guided(self) -> bool:
        return self.omega > 0 or self.uses_glue

    def replace(self, **changes) -> PSLDConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, object]:
        """Every field by name, JSON-ready (str, int, float, bool); ``from_dict`` inverts it exactly.

        >>> PSLDConfig.from_dict(PSLDConfig(omega=0.5).to_dict()) == PSLDConfig(omega=0.5)
        True
        """
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> PSLDConfig:
        """The configuration ``data`` describes (missing fields take their defaults; validated). For any
        method, :func:`psld.methods.config_from_dict` picks the class that ``data["method"]`` names.

        An unknown field (a typo, or a file written by another version) raises a one-line ``ValueError``
        naming it instead of being dropped.

        >>> PSLDConfig.from_dict(PSLDConfig(omega=0.5).to_dict()) == PSLDConfig(omega=0.5)
        True
        """
        if not isinstance(data, dict):
            raise ValueError(f"a PSLDConfig dict is expected, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            method = data.get("method", "psld")
            raise ValueError(f"unknown config field(s) for method {method!r}: {', '.join(unknown)}")
        return cls(**data)  # type: ignore[arg-type]

    @classmethod
    def official(cls, task: str, model: str = "sd", num_steps: int = 1000) -> PSLDConfig:
        """The settings of the official run script for ``task`` (docs/official.md §9).

        Unsquared whole-residual norms, DDIM eta 0, fresh N(0, 0.05^2) noise on the predicted
        measurement, a sampled KL encoding, the official pseudo-transpose in the glue and the official
        random box placement (``inpaint-box``).

        Timesteps (``timestep_spacing="official"``, :func:`psld.schedule.official_ddim_schedule`): with
        ``c = 1000 // num_steps`` the model sees ``range(0, 1000, c) + 1`` (``ceil(1000 / c)`` steps, so
        ``num_steps=30`` runs 31 steps from ``t = 991`` and every ``num_steps`` in 501..1000 runs 1000),
        ``abar`` is taken at those timesteps (at ``t - 1`` when ``c`` is 1 or 1000, the official patch) and
        ``abar_prev`` after the last step is ``abar[0]``. ``num_steps`` values for which the official code
        crashes (``c`` divides 999, e.g. 300) raise ``ValueError``.
        """
        _choice("model", model, tuple(OFFICIAL_WEIGHTS))
        weights = OFFICIAL_WEIGHTS[model]
        if task not in weights:
            raise ValueError(
                f"task {task!r} has no official {model} run script; official presets exist for "
                f"{', '.join(sorted(weights))} (use PSLDConfig.preset for the others)"
            )
        from psld.schedule import official_ddim_schedule

        official_ddim_schedule(torch.ones(OFFICIAL_T), num_steps)  # the official code's own failures
        omega, gamma = weights[task]
        return cls(
            method="psld",
            num_steps=num_steps,
            eta=0.0,
            omega=omega,
            gamma=gamma,
            loss="norm",
            glue="official",
            encode="sample",
            noisy_prediction=True,
            prediction_sigma=0.05,
            grad_wrt="zt",
            timestep_spacing="official",
            steps_offset=0,
            set_alpha_to_one=False,
            model_t_offset=0,
            box_placement="official",
        )

    @classmethod
    def preset(cls, task: str, model: str = "sd", **changes) -> PSLDConfig:
        """Improved defaults for ``task``: the official weights with the zero-cost fixes.

        200 DDIM steps (the official demo's default), true adjoint in the glue, deterministic (mode)
        encoding, no noise on the predicted measurement, aligned timesteps, per-sample norms.
        """
        _choice("model", model, tuple(OFFICIAL_WEIGHTS))
        weights = {**EXTRA_WEIGHTS, **OFFICIAL_WEIGHTS[model]}
        if task not in weights:
            raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(sorted(weights))}")
        omega, gamma = weights[task]
        base = cls(omega=omega, gamma=gamma, steps_offset=1, set_alpha_to_one=False)
        return base.replace(**changes) if changes else base
