"""The one validation layer of :func:`psld.evaluate` (and so of ``psld evaluate``).

:func:`check_inputs` checks every argument once, with one message per check, before any model
loads and before anything is written: numbers (finite, in range), names (tasks, methods, presets,
resize and super-resolution modes), device and dtype, the image set (each file opened once), the
model-dependent limits read from the models' config files (:mod:`psld.evaluation.modelinfo`: image
size multiple, step count against the scheduler, the preset's own step rules) and the output folder
(writable; an existing run compatible with this one). A model whose config files cannot be read
without loading it (a hub id not in the cache) is checked by :func:`check_loaded` right after it
loads, still before anything is written.

**Compatibility of an existing output folder.** ``run.json`` holds the settings every entry shares
(:class:`RunSettings`: size, resize, seed, sigma_y, sr_mode and the psld version) and, per
``task/method``, the model and the resolved sampler configuration (:meth:`PSLDConfig.to_dict`). A
rerun must agree on the shared settings and on every ``task/method`` both runs have; new tasks,
methods and images are added. Model paths are compared as absolute paths.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from psld.evaluation.datasets import RESIZE_MODES, ImageSource, check_images, resolve_images
from psld.evaluation.methods import METHODS, model_role, sampler_config
from psld.evaluation.modelinfo import ModelInfo, model_info, normalise_source
from psld.tasks import get_task

__all__ = ["PRESETS", "SR_MODES", "RunSettings", "Checked", "check_inputs", "check_loaded", "check_out"]

PRESETS = ("improved", "official")
SR_MODES = ("bicubic", "average")
ROLES = {"latent": ("model", "--model"), "pixel": ("pixel_model", "--pixel-model")}


@dataclass(frozen=True)
class RunSettings:
    """The settings every entry of an output folder shares (``run.json``'s ``config``)."""

    size: int
    resize: str
    seed: int
    sigma_y: float
    sr_mode: str
    version: str


@dataclass
class Checked:
    """Every input of :func:`psld.evaluate`, checked and resolved."""

    sources: list[ImageSource]
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    settings: RunSettings
    preset: str
    steps: int | None
    omega: float | None
    gamma: float | None
    device: Any
    dtype: Any
    out: Path | None
    #: role ("latent"/"pixel") -> the model argument as given (object, folder or hub id)
    models: dict[str, Any] = field(default_factory=dict)
    #: role -> normalised source string
    sources_of: dict[str, str] = field(default_factory=dict)
    #: role -> ModelInfo, or None until the model is loaded (then check_loaded fills it)
    infos: dict[str, ModelInfo | None] = field(default_factory=dict)
    #: "task/method" -> {"model": source or None, "sampler": PSLDConfig.to_dict() or None}
    entries: dict[str, dict] = field(default_factory=dict)

    @property
    def family(self) -> str:
        """The operator family: the latent model's, ``"ldm"`` with only a pixel model, else ``"sd"``."""
        latent = self.infos.get("latent")
        if latent is not None:
            return latent.family
        return "ldm" if "pixel" in self.models else "sd"

    def config_of(self, task: str, method: str):
        """The resolved :class:`PSLDConfig` of an entry (``None`` for ``pinv``)."""
        from psld.methods import config_from_dict

        data = self.entries[f"{task}/{method}"]["sampler"]
        return None if data is None else config_from_dict(data)


# ---------------------------------------------------------------------------------------------- values
def _integer(name: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _non_negative(name: str, value: Any) -> float:
    real = isinstance(value, numbers.Real) and not isinstance(value, bool)
    if not (real and math.isfinite(float(value)) and float(value) >= 0):
        raise ValueError(f"{name} must be a finite non-negative number, got {value!r}")
    return float(value)


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _methods(methods: Any) -> tuple[str, ...]:
    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if not items or any(not isinstance(m, str) or not m for m in items):
        raise ValueError(f"methods: expected a comma-separated list of {', '.join(METHODS)}, got {methods!r}")
    for m in items:
        if m not in METHODS:
            raise ValueError(f"methods: unknown method {m!r}; known methods: {', '.join(METHODS)}")
    if len(set(items)) != len(items):
        raise ValueError(f"methods: {methods!r} lists a method twice")
    return tuple(items)


def _tasks(tasks: Any) -> tuple[str, ...]:
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    if not items:
        raise ValueError("tasks: at least one task is needed (see `psld tasks`)")
    names = tuple(get_task(t).name for t in items)
    if len(set(names)) != len(names):
        raise ValueError(f"tasks: {list(items)} lists a task twice")
    return names


def _model_source(name: str, model: Any) -> str:
    if isinstance(model, (str, os.PathLike)):
        return normalise_source(os.fspath(model))
    source = getattr(model, "source", None)
    if not isinstance(source, str) or not hasattr(model, "prior"):
        raise ValueError(
            f"{name} must be a LatentModel or a model folder / hub id, got {type(model).__name__}"
        )
    return normalise_source(source)


# ---------------------------------------------------------------------------------------------- models
def _check_model(c: Checked, role: str, info: ModelInfo) -> None:
    """Family, image size and, per entry, the sampler configuration and its schedule."""
    import torch

    from psld.sampler import schedule_for

    name, flag = ROLES[role]
    src = c.sources_of[role]
    if role == "pixel" and info.family != "pixel":
        raise ValueError(f"{name} {src!r} is a latent model (family {info.family!r}); pass it as --model")
    if role == "latent" and info.family == "pixel":
        raise ValueError(f"{name} {src!r} is a pixel-space model; pass it as --pixel-model for dps")
    if c.settings.size % info.size_multiple:
        raise ValueError(
            f"size {c.settings.size} must be a multiple of {info.size_multiple} for the {role} model {src!r}"
        )
    T = info.num_train_timesteps
    if c.steps is not None and c.steps > T:
        raise ValueError(f"steps must be at most {T} (the training timesteps of {src!r}), got {c.steps}")
    # any decreasing abar of the right length: the schedule checks depend on T and the settings only
    probe = torch.linspace(0.999, 0.001, T, dtype=torch.float64)
    for task in c.tasks:
        for method in c.methods:
            if model_role(method) != role:
                continue
            try:
                config = sampler_config(
                    method,
                    task,
                    info,
                    preset=c.preset,
                    steps=c.steps,
                    omega=c.omega,
                    gamma=c.gamma,
                    sigma_y=c.settings.sigma_y,
                )
                assert config is not None  # only a model-free method (pinv) has no sampler config
                schedule_for(config, probe)
            except ValueError as exc:
                raise ValueError(
                    f"steps {c.steps if c.steps is not None else '(preset default)'} cannot run {method} on "
                    f"{task} with {src!r} (preset {c.preset!r}): {' '.join(str(exc).split())}"
                ) from None
            c.entries[f"{task}/{method}"] = {"model": src, "sampler": config.to_dict()}


def check_loaded(c: Checked, role: str, model: Any) -> None:
    """The model checks of a model whose config files could not be read before it loaded."""
    if c.infos.get(role) is None:
        info = model_info(model)
        if info is None:  # pragma: no cover - a LatentModel always has the fields
            raise ValueError(f"{ROLES[role][0]}: cannot read the model's settings")
        c.infos[role] = info
        _check_model(c, role, info)


# ---------------------------------------------------------------------------------------------- output
def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k} {a!r} -> {b!r}")
    return out


def read_run(out: Path) -> dict | None:
    """``out/run.json`` as a dict, ``None`` when absent; ``ValueError`` when unreadable."""
    run_file = out / "run.json"
    if not run_file.is_file():
        return None
    try:
        run = json.loads(run_file.read_text())
        if not isinstance(run.get("config"), dict) or not isinstance(run.get("entries", {}), dict):
            raise TypeError
        return run
    except (OSError, ValueError, TypeError, AttributeError):
        raise ValueError(f"out: {str(run_file)!r} is unreadable; use a new output folder") from None


def check_out(c: Checked) -> None:
    """``out`` is writable, and a run already there agrees with this one (module docstring)."""
    from psld.files import check_writable_folder

    if c.out is None:
        return
    check_writable_folder(c.out, "out:")
    old = read_run(c.out)
    if old is None:
        return
    changed = _differences(old["config"], asdict(c.settings))
    old_entries = old.get("entries", {})
    for name, entry in c.entries.items():
        if name in old_entries:
            changed += [f"{name}: {d}" for d in _differences(old_entries[name], entry)]
    if changed:
        shown = "; ".join(changed[:4]) + (f"; and {len(changed) - 4} more" if len(changed) > 4 else "")
        raise ValueError(
            f"out: {str(c.out)!r} holds a run with another configuration ({shown}); use a new output folder"
        )


# ---------------------------------------------------------------------------------------------- all
def _check_preset(preset: Any, tasks: tuple[str, ...]) -> None:
    _choice("preset", preset, PRESETS)
    if preset == "official":
        from psld.config import OFFICIAL_WEIGHTS

        for t in tasks:
            if t not in OFFICIAL_WEIGHTS["sd"]:
                raise ValueError(
                    f"preset 'official': task {t!r} has no official run script "
                    f"(official tasks: {', '.join(sorted(OFFICIAL_WEIGHTS['sd']))})"
                )


def _check_needs(methods: tuple[str, ...], model: Any, pixel_model: Any) -> None:
    """Each method's model is given."""
    latent = [m for m in methods if model_role(m) == "latent"]
    if latent and model is None:
        raise ValueError(f"methods {', '.join(latent)} need a latent model (--model)")
    pixel = [m for m in methods if model_role(m) == "pixel"]
    if pixel and pixel_model is None:
        raise ValueError(
            f"method {', '.join(pixel)} needs a pixel-space model "
            "(--pixel-model, a diffusers UNet2DModel folder)"
        )


def _add_models(c: Checked, given: dict[str, Any]) -> None:
    """The models the methods use, their facts (checked where known now) and every entry's record."""
    roles = {model_role(m) for m in c.methods} - {None}
    for role in ("latent", "pixel"):
        if role in roles:
            c.models[role] = given[role]
            c.sources_of[role] = _model_source(ROLES[role][0], given[role])
            info = c.infos[role] = model_info(given[role])
            if info is not None:
                _check_model(c, role, info)
    for task in c.tasks:
        for method in c.methods:
            if model_role(method) is None:
                c.entries[f"{task}/{method}"] = {"model": None, "sampler": None}


def check_inputs(
    images: Any,
    tasks: Any,
    *,
    model: Any,
    methods: Any,
    pixel_model: Any,
    out: Any,
    size: Any,
    resize: Any,
    steps: Any,
    seed: Any,
    preset: Any,
    omega: Any,
    gamma: Any,
    sigma_y: Any,
    sr_mode: Any,
    device: Any,
    dtype: Any,
) -> Checked:
    """Every check of :func:`psld.evaluate`, in the order of its arguments; the resolved inputs."""
    import psld
    from psld.models.loading import check_device, default_device, resolve_dtype

    methods_t = _methods(methods)
    tasks_t = _tasks(tasks)
    size_i = _integer("size", size, 8)
    _choice("resize", resize, RESIZE_MODES)
    if resize == "nearest-up" and size_i % 2:
        raise ValueError(f"resize 'nearest-up' needs an even size, got {size_i}")
    steps_i = None if steps is None else _integer("steps", steps, 1)
    seed_i = _integer("seed", seed)
    _check_preset(preset, tasks_t)
    omega_f = None if omega is None else _non_negative("omega", omega)
    gamma_f = None if gamma is None else _non_negative("gamma", gamma)
    sigma_f = _non_negative("sigma_y", sigma_y)
    _choice("sr_mode", sr_mode, SR_MODES)
    dev = check_device(device)
    resolve_dtype(dtype, dev if dev is not None else default_device())
    _check_needs(methods_t, model, pixel_model)
    sources = resolve_images(images)
    check_images(sources)
    c = Checked(
        sources=sources,
        tasks=tasks_t,
        methods=methods_t,
        settings=RunSettings(size_i, resize, seed_i, sigma_f, sr_mode, psld.__version__),
        preset=preset,
        steps=steps_i,
        omega=omega_f,
        gamma=gamma_f,
        device=dev,
        dtype=dtype,
        out=None if out is None else Path(out),
    )
    _add_models(c, {"latent": model, "pixel": pixel_model})
    if all(info is not None for info in c.infos.values()):
        check_out(c)
    elif c.out is not None:
        from psld.files import check_writable_folder

        check_writable_folder(c.out, "out:")  # the rest of check_out once the model is known
    return c
