"""The methods of :func:`psld.evaluate`: their sampler configurations, the shared measurement, one run.

For each ``(image, task)`` the operator ``A`` is built from ``entry_seed(.., "operator")`` and the
measurement ``y = A x + n``, ``n ~ N(0, (2 sigma_y)^2)`` in the core's [-1, 1] units, is drawn exactly as
:func:`psld.solve` draws it with ``simulate=True`` and ``seed = entry_seed(..)``. ``psld``/``gml``/``ldps``
run :func:`psld.solve` on the latent model, ``dps`` on the pixel-space model, ``pinv`` is ``A^+ y``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from psld.evaluation.entries import entry_seed
from psld.methods import REGISTRY
from psld.tasks import get_task

if TYPE_CHECKING:
    from psld.config import PSLDConfig
    from psld.evaluation.modelinfo import ModelInfo
    from psld.operators.base import LinearOperator

__all__ = ["METHODS", "LATENT_METHODS", "PIXEL_METHODS", "sampler_config", "simulate", "run_method"]

#: methods run by :func:`psld.solve` on the latent model (``--model``): the core's and the registry's
#: (resample, mpgd, stsl, daps, diffpir; :mod:`psld.methods`)
LATENT_METHODS: tuple[str, ...] = ("psld", "gml", "ldps", *REGISTRY)
#: methods run on the pixel-space model (``--pixel-model``)
PIXEL_METHODS: tuple[str, ...] = ("dps",)
#: every method ``evaluate`` knows; ``pinv`` needs no model
METHODS: tuple[str, ...] = (*LATENT_METHODS, *PIXEL_METHODS, "pinv")


def model_role(method: str) -> str | None:
    """``"latent"``, ``"pixel"`` or ``None`` (model-free) for a method name."""
    return "latent" if method in LATENT_METHODS else "pixel" if method in PIXEL_METHODS else None


def sampler_config(
    method: str,
    task: str,
    info: ModelInfo,
    *,
    preset: str,
    steps: int | None,
    omega: float | None,
    gamma: float | None,
    sigma_y: float = 0.0,
) -> PSLDConfig | None:
    """The resolved :class:`PSLDConfig` of ``method`` on ``task`` (``None`` for ``pinv``).

    ``preset="official"``: :meth:`PSLDConfig.official` (``steps`` default 1000); ``"improved"``:
    :func:`psld.presets.model_preset` (the task preset, the model's scheduler settings and its tuned
    ``psld_presets.json``). ``steps``/``omega``/``gamma`` override. A registry method starts from its own
    defaults and takes only the model's schedule switches from the preset; DiffPIR's noise level is
    ``2 sigma_y`` (the measurement noise in [-1, 1] units).
    A pixel-space model uses the LDM family's weights. Raises ``ValueError`` for a step count the
    preset refuses.
    """
    from psld.config import PSLDConfig

    if model_role(method) is None:
        return None
    family = "ldm" if info.family == "pixel" else info.family
    if preset == "official":
        base = PSLDConfig.official(task, family, num_steps=steps or 1000)
    else:
        from psld.presets import model_preset

        base = model_preset(info, task)
    changes: dict[str, Any] = {"method": method}
    if steps is not None:
        changes["num_steps"] = steps
    if omega is not None:
        changes["omega"] = float(omega)
    if gamma is not None:
        changes["gamma"] = float(gamma)
    if method in REGISTRY:
        from psld.methods import method_config

        del changes["method"]
        if method == "diffpir":
            changes.setdefault("sigma_n", max(2.0 * sigma_y, 1e-3))
        return method_config(method, base, **changes)
    return base.replace(**changes)


def simulate(
    task: str,
    x01: torch.Tensor,
    *,
    seed: int,
    image: str,
    sigma_y: float,
    sr_mode: str,
    size: int,
    family: str,
) -> tuple[LinearOperator, torch.Tensor, int]:
    """The operator, the noisy measurement ``y`` ([-1, 1]) of ``image`` for ``task``, and its seed."""
    from psld.noise import GaussianNoise

    meas_seed = entry_seed(seed, image, task)
    gen = torch.Generator().manual_seed(entry_seed(seed, image, task, "operator"))
    op = get_task(task).build_operator(
        (int(x01.shape[1]), int(x01.shape[2]), int(x01.shape[3])),
        family=family,
        sr_mode=sr_mode,
        seed=gen,
        side=size,
    )
    y = GaussianNoise(2.0 * sigma_y)(op.forward(x01 * 2 - 1), [torch.Generator().manual_seed(meas_seed)])
    return op, y, meas_seed


def run_method(
    method: str,
    op: LinearOperator,
    x01: torch.Tensor,
    y: torch.Tensor,
    seed: int,
    model: Any,
    config: PSLDConfig | None,
    sigma_y: float,
) -> tuple[torch.Tensor, dict]:
    """The restored image ``[1, 3, H, W]`` in [0, 1] (CPU, float32) and the settings it ran with.

    ``pinv``: ``A^+ y``. The others: :func:`psld.solve` with ``simulate=True`` and ``seed``, which draws
    the very ``y`` of :func:`simulate`; ``config`` is :func:`sampler_config`'s.
    """
    if config is None:
        with torch.no_grad():
            x = op.pinv(y)
        return ((x.float() + 1) / 2).clamp(0, 1).cpu(), {"steps": None, "omega": None, "gamma": None}
    from psld.restore import solve

    out = solve(
        x01,
        op,
        model=model,
        simulate=True,
        sigma_y=sigma_y,
        seed=seed,
        config=config,
        output_type="pt",
        progress=False,
    )
    info = {
        "steps": config.num_steps,
        "omega": config.omega,
        "gamma": config.gamma if config.uses_glue else 0.0,
    }
    return out.images.float().cpu(), info
