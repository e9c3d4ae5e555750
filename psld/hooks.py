"""The fixed points at which the sampler core calls a method's hooks.

A method beyond PSLD/GML/LDPS/DPS is a :class:`MethodConfig`: a :class:`psld.config.PSLDConfig` subclass
(so it shares the schedule switches and round-trips to JSON) whose hooks the core loop of
:func:`psld.sample` calls, in this order, at step ``i`` (``a = abar_t``, ``a' = abar_prev``)::

    z_t              <- refine_latent(step, z_t)                     before the prior (STSL)
    eps, z0_hat       = prior.eps(z_t, t), Tweedie
    z0_hat, eps      <- update_z0(step, z_t, z0_hat, eps)             MPGD, DiffPIR
    s                 = step_sigma(a, a')                             re-noise rule (DiffPIR's zeta)
    z_{t-1}           = sqrt(a') z0_hat + sqrt(1 - a' - s^2) eps + s xi
    z_{t-1}          <- z_{t-1} - guidance_scale(step) * grad         the core's DPS step (ReSample)
    z_{t-1}          <- consistency(step, z_{t-1}, z0_hat)             hard data consistency (ReSample)

and :meth:`MethodConfig.initial_latents` once before the loop. A method whose sampler is not a DDIM loop
(latent DAPS) sets ``own_loop`` and implements :meth:`MethodConfig.run`, which receives the same prior,
encoder/decoder, operator, initial latents, generators, callback and progress flag and returns the same
logs, so the core's divergence check and decode apply unchanged. A hook reports its per-sample
measurement loss through ``step.meas``. The default hooks do nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from psld.config import PSLDConfig
from psld.operators.base import LinearOperator
from psld.protocols import Decoder, Encoder, LatentPrior
from psld.schedule import ddim_sigma

Generator = torch.Generator | list[torch.Generator] | None


@dataclass
class Step:
    """What a hook sees: step index ``i``, the prior's timestep ``t``, ``a = abar_t``, ``a' = abar_prev``.

    ``meas`` may be set by a hook to its per-sample measurement loss ``[B]`` (logged as the core logs
    its own); ``num_train`` is the prior's number of training timesteps.
    """

    i: int
    t: int
    a: float
    a_prev: float
    prior: LatentPrior
    encoder: Encoder
    decoder: Decoder
    operator: LinearOperator
    y: Tensor
    generator: Generator
    num_steps: int
    num_train: int
    meas: Tensor | None = None


@dataclass
class LoopResult:
    """What a method's own loop returns to :func:`psld.sample` (same meaning as in the core loop)."""

    z: Tensor
    meas: Tensor  # [steps, B]
    glue: Tensor  # [steps, B]
    nonfinite: Tensor  # [steps] bool
    timesteps: Tensor  # [steps]


@dataclass(frozen=True)
class MethodConfig(PSLDConfig):
    """A method: a named configuration plus hooks at the fixed points of the core loop (module doc).

    Subclasses set ``NAME`` (their ``method`` value) and override the hooks they need. Fields of
    :class:`PSLDConfig` that a method does not read (for most: ``gamma``, ``glue``, ``noisy_prediction``,
    ``grad_wrt``) are kept for the shared JSON form and ignored.
    """

    NAME: ClassVar[str] = ""
    #: True for a method that runs its own loop (:meth:`run`) instead of the DDIM loop.
    own_loop: ClassVar[bool] = False
    #: the step sizes a divergence message names, and what to do about them
    KNOBS: ClassVar[tuple[str, ...]] = ("omega",)
    ADVICE: ClassVar[str] = "lower omega"

    def __post_init__(self) -> None:
        if self.method != self.NAME:
            raise ValueError(f"method must be {self.NAME!r} for {type(self).__name__}, got {self.method!r}")
        super().__post_init__()

    def _methods(self) -> tuple[str, ...]:
        return (self.NAME,)

    @property
    def uses_glue(self) -> bool:
        return False

    @property
    def guided(self) -> bool:
        """Whether the core's DPS step (gradient through the prior, weight ``omega``) runs."""
        return False

    # ------------------------------------------------------------------------------------------ hooks
    def initial_latents(self, step: Step, z: Tensor) -> Tensor:
        """The first latent, given the core's ``N(0, I)`` draw ``z``."""
        return z

    def refine_latent(self, step: Step, z: Tensor) -> Tensor:
        """``z_t`` before the prior sees it."""
        return z

    def update_z0(self, step: Step, z: Tensor, z0: Tensor, eps: Tensor) -> tuple[Tensor, Tensor]:
        """The ``(z0_hat, eps)`` the DDIM step uses."""
        return z0, eps

    def step_sigma(self, a: float, a_prev: float) -> float:
        """Standard deviation ``s`` of the fresh noise in the DDIM step (DDIM's eta rule by default)."""
        return ddim_sigma(a, a_prev, self.eta)

    def guidance_scale(self, step: Step) -> float:
        """Factor on the core's DPS gradient."""
        return 1.0

    def consistency(self, step: Step, z_next: Tensor, z0: Tensor) -> Tensor:
        """``z_{t-1}`` after the DDIM (and DPS) step."""
        return z_next

    def run(
        self,
        prior: LatentPrior,
        encoder: Encoder,
        decoder: Decoder,
        operator: LinearOperator,
        y: Tensor,
        z: Tensor,
        generator: Generator,
        callback: Callable[[int, int, dict], dict | None] | None,
        progress: bool,
    ) -> LoopResult:
        """A method's own loop (only when ``own_loop``)."""
        raise NotImplementedError(f"{type(self).__name__} runs in the core's DDIM loop")
