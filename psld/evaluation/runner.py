"""The evaluation loop of :func:`psld.evaluate`: entries, seeds, sharding, resume and atomic writes.

An *entry* is one (image, task, method). For each (image, task) the operator ``A`` and the noisy
measurement ``y = A x + n`` (``n ~ N(0, (2 sigma_y)^2)`` in [-1, 1] units) are simulated from the clean
image with seeds derived from ``(seed, image name, task)`` by SHA-256 (:func:`entry_seed`), so every
method sees the same ``y`` and a result never depends on which process or which run computed it.
Methods: ``psld``/``gml``/``ldps`` and the registry's ``resample``/``mpgd``/``stsl``/``daps``/``diffpir``
(:mod:`psld.methods`) are :func:`psld.solve` with that method on the latent model, ``dps``
the same on the pixel-space model, ``pinv`` the model-free ``A^+ y`` (inpainting: the measurement).

**Outputs** under ``out``: ``gt/<image>.png`` (the ground-truth crop), ``<task>/measurement/<image>.png``,
``<task>/<method>/<image>.png``, ``results.jsonl`` (one JSON object per entry), ``run.json``,
``summary.md``/``summary.csv`` and ``figures/<task>.png``/``.pdf`` (:mod:`psld.evaluation.report`).
PNGs are written to a temporary name and renamed (``os.replace``); a row is appended (and fsynced) only
after its PNG exists, so a run killed at any moment loses at most the entry in flight.

**Resume.** Entries already in ``results.jsonl`` (or in a ``results.rank<k>.jsonl`` left by a killed
multi-process run) are skipped; a truncated last line (SIGKILL during a write) is ignored and cut
before appending. ``run.json`` holds the configuration fingerprint (models, size, resize, steps, seed,
preset, omega, gamma, sigma_y, sr_mode); a different configuration into the same ``out`` is refused.
Tasks, methods and images may change between runs (the new entries are added).

**Scale-out.** Under ``accelerate launch --multi_gpu --num_processes N`` (``WORLD_SIZE > 1``; on a
machine without CUDA the processes run on the CPU with gloo) process ``k`` takes
the (image, task) pairs ``k, k + N, ...`` on its own device, appends to ``results.rank<k>.jsonl``; after
a barrier the main process merges them into ``results.jsonl`` and writes the summary and figures.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from psld.evaluation.datasets import RESIZE_MODES, ImageSource, check_images, load_image, resolve_images
from psld.methods import REGISTRY
from psld.tasks import get_task

__all__ = ["evaluate", "EvalConfig", "EvalResult", "entry_seed", "METHODS", "LATENT_METHODS"]

LATENT_METHODS = ("psld", "gml", "ldps", *REGISTRY)  # REGISTRY: resample, mpgd, stsl, daps, diffpir
METHODS = (*LATENT_METHODS, "dps", "pinv")
PRESETS = ("improved", "official")
RESULTS = "results.jsonl"


# ---------------------------------------------------------------------------------------------- config
@dataclass(frozen=True)
class EvalConfig:
    """Everything that changes a result (the fingerprint of an output folder)."""

    model: str | None
    pixel_model: str | None
    size: int
    resize: str
    steps: int | None
    seed: int
    preset: str
    omega: float | None
    gamma: float | None
    sigma_y: float
    sr_mode: str

    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]


def entry_seed(seed: int, image: str, task: str, stream: str = "measurement") -> int:
    """A 63-bit seed from ``(seed, image, task, stream)`` by SHA-256 (stable across processes and runs)."""
    digest = hashlib.sha256(f"{seed}\0{image}\0{task}\0{stream}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass
class EvalResult:
    """Rows of an evaluation (one dict per entry) with their summary; ``out`` is the folder or ``None``."""

    rows: list[dict]
    out: Path | None = None
    notes: dict[str, str] | None = None

    def summary(self) -> list[dict]:
        """Mean and std per (task, method) of psnr/ssim/residual/seconds, with the best marked."""
        from psld.evaluation.report import summarize

        return summarize(self.rows)

    def to_markdown(self) -> str:
        from psld.evaluation.report import markdown

        return markdown(self.summary(), self.notes or {})


# ---------------------------------------------------------------------------------------------- checks
def _methods(methods) -> tuple[str, ...]:
    items = [m.strip() for m in methods.split(",")] if isinstance(methods, str) else list(methods)
    if not items or any(not m for m in items):
        raise ValueError(f"methods: expected a comma-separated list of {', '.join(METHODS)}, got {methods!r}")
    for m in items:
        if m not in METHODS:
            raise ValueError(f"methods: unknown method {m!r}; known methods: {', '.join(METHODS)}")
    if len(set(items)) != len(items):
        raise ValueError(f"methods: {methods!r} lists a method twice")
    return tuple(items)


def _tasks(tasks) -> tuple[str, ...]:
    items = [tasks] if isinstance(tasks, str) else list(tasks)
    if not items:
        raise ValueError("tasks: at least one task is needed (see `psld tasks`)")
    names = tuple(get_task(t).name for t in items)
    if len(set(names)) != len(names):
        raise ValueError(f"tasks: {list(items)} lists a task twice")
    return names


def _check_out(out: Path, config: EvalConfig) -> None:
    from psld.files import check_writable_folder

    check_writable_folder(out, "out:")
    run_file = out / "run.json"
    if run_file.is_file():
        try:
            old = json.loads(run_file.read_text())["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise ValueError(f"out: {str(run_file)!r} is unreadable; use a new output folder") from None
        new = asdict(config)
        changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
        if changed:
            raise ValueError(
                f"out: {str(out)!r} holds a run with another configuration ({'; '.join(changed)}); "
                "use a new output folder"
            )


def _model_source(model) -> str | None:
    if model is None:
        return None
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    source = getattr(model, "source", None)
    if not isinstance(source, str) or not hasattr(model, "prior"):
        raise ValueError(
            f"model must be a LatentModel or a model folder / hub id, got {type(model).__name__}"
        )
    return source


# ---------------------------------------------------------------------------------------------- files
def _atomic_png(image01: torch.Tensor, path: Path) -> None:
    """Save ``[3, H, W]`` in [0, 1] as PNG via a temporary name and ``os.replace``."""
    from psld.images import to_pil

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    to_pil(image01[None])[0].save(tmp, format="PNG")
    os.replace(tmp, path)


def _atomic_text(text: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_rows(path: Path) -> list[dict]:
    """Rows of a JSONL results file; an unterminated last line (a killed write) is ignored."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    complete = data.endswith(b"\n")
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except ValueError:
            if i == len(lines) - 1 and not complete:
                break
            raise ValueError(f"{str(path)!r}: line {i + 1} is not valid JSON") from None
    return rows


class _Appender:
    """Appends one JSON line per row and fsyncs it; cuts an unterminated last line first."""

    def __init__(self, path: Path):
        self.path = path
        if path.is_file():
            data = path.read_bytes()
            if data and not data.endswith(b"\n"):
                with open(path, "r+b") as f:
                    f.truncate(data.rfind(b"\n") + 1)

    def append(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
            os.fsync(f.fileno())


def _key(row: dict) -> tuple[str, str, str]:
    return (row["image"], row["task"], row["method"])


def _all_rows(out: Path) -> list[dict]:
    rows, seen = [], set()
    for path in [out / RESULTS, *sorted(out.glob("results.rank*.jsonl"))]:
        for row in read_rows(path):
            if _key(row) not in seen:
                seen.add(_key(row))
                rows.append(row)
    return rows


# ---------------------------------------------------------------------------------------------- run
def _distributed(device):
    """``(rank, world, state)``: accelerate's ``PartialState`` under a multi-process launch, else one process.

    On a machine without CUDA (or with ``device="cpu"``) the processes join a gloo group on the CPU.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        cpu = not torch.cuda.is_available() or (device is not None and torch.device(device).type == "cpu")
        state = PartialState(cpu=cpu)
        return state.process_index, state.num_processes, state
    return 0, 1, None


def _config_for(method: str, task: str, model, cfg: EvalConfig):
    from psld.config import PSLDConfig

    family = "ldm" if model.family == "pixel" else model.family
    if cfg.preset == "official":
        base = PSLDConfig.official(task, family, num_steps=cfg.steps or 1000)
    else:
        base = PSLDConfig.preset(task, family)
        base = base.replace(**model.scheduler_settings())
    changes: dict[str, Any] = {}
    if cfg.steps is not None:
        changes["num_steps"] = cfg.steps
    if cfg.omega is not None:
        changes["omega"] = cfg.omega
    if cfg.gamma is not None:
        changes["gamma"] = cfg.gamma
    if method in REGISTRY:  # the method's own defaults; the preset gives only the model's schedule switches
        from psld.methods import method_config

        if method == "diffpir":
            changes.setdefault("sigma_n", max(2.0 * cfg.sigma_y, 1e-3))
        return method_config(method, base, **changes)
    return base.replace(method=method, **changes)


def simulate(task: str, x01: torch.Tensor, cfg: EvalConfig, image: str, family: str):
    """The operator and the noisy measurement ``y`` ([-1, 1]) of ``image`` for ``task``, and the seed.

    ``A`` is drawn from ``entry_seed(.., "operator")``; the noise is drawn exactly as
    :func:`psld.solve` draws it with ``seed = entry_seed(..)`` and ``simulate=True``.
    """
    from psld.noise import GaussianNoise

    seed = entry_seed(cfg.seed, image, task)
    gen = torch.Generator().manual_seed(entry_seed(cfg.seed, image, task, "operator"))
    t = get_task(task)
    op = t.build_operator(tuple(x01.shape[1:]), family=family, sr_mode=cfg.sr_mode, seed=gen, side=cfg.size)
    y = GaussianNoise(2.0 * cfg.sigma_y)(op.forward(x01 * 2 - 1), [torch.Generator().manual_seed(seed)])
    return op, y, seed


def evaluate(
    images: Any,
    tasks: str | list[str],
    *,
    model: Any = None,
    methods: str | tuple[str, ...] | list[str] = ("psld", "ldps", "pinv"),
    pixel_model: Any = None,
    out: str | os.PathLike | None = None,
    size: int = 256,
    resize: str = "crop",
    steps: int | None = None,
    seed: int = 0,
    preset: str = "improved",
    omega: float | None = None,
    gamma: float | None = None,
    sigma_y: float = 0.025,
    sr_mode: str = "bicubic",
    device: torch.device | str | None = None,
    dtype: torch.dtype | str | None = None,
    progress: bool = True,
) -> EvalResult:
    """Run every (image, task, method) and return the rows (and, with ``out``, write the outputs).

    ``images``: ``"builtin"``, a folder, a glob or a list of files (:mod:`psld.evaluation.datasets`),
    centre-cropped and resized to ``size`` (``resize``: ``"crop"`` or ``"nearest-up"``). ``tasks``: task
    names. ``methods``: of ``psld, gml, ldps`` (need ``model``: a latent model folder, hub id or
    :class:`~psld.LatentModel`), ``dps`` (needs ``pixel_model``, a pixel-space ``UNet2DModel`` folder)
    and ``pinv`` (no model). ``steps``/``omega``/``gamma`` override the task preset (``preset``:
    ``"improved"`` = :meth:`PSLDConfig.preset`, ``"official"`` = :meth:`PSLDConfig.official`);
    ``sigma_y`` is the noise std in [0, 1] units. Every input is checked before any model loads.
    See the module docstring for seeds, outputs, resume and multi-process runs.
    """
    methods = _methods(methods)
    tasks = _tasks(tasks)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8 (pixels), got {size!r}")
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if resize == "nearest-up" and size % 2:
        raise ValueError(f"resize 'nearest-up' needs an even size, got {size}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps must be a positive integer, got {steps!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if preset == "official":
        from psld.config import OFFICIAL_WEIGHTS

        for t in tasks:
            if t not in OFFICIAL_WEIGHTS["sd"]:
                raise ValueError(
                    f"preset 'official': task {t!r} has no official run script "
                    f"(official tasks: {', '.join(sorted(OFFICIAL_WEIGHTS['sd']))})"
                )
    for name, value in (("omega", omega), ("gamma", gamma), ("sigma_y", sigma_y)):
        if value is not None and not (isinstance(value, (int, float)) and float(value) >= 0):
            raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    if sr_mode not in ("bicubic", "average"):
        raise ValueError(f"sr_mode must be 'bicubic' or 'average', got {sr_mode!r}")
    latent = [m for m in methods if m in LATENT_METHODS]
    if latent and model is None:
        raise ValueError(f"methods {', '.join(latent)} need a latent model (--model)")
    if "dps" in methods and pixel_model is None:
        raise ValueError(
            "method 'dps' needs a pixel-space model (--pixel-model, a diffusers UNet2DModel folder)"
        )
    sources = resolve_images(images)
    check_images(sources)
    cfg = EvalConfig(
        model=_model_source(model) if latent else None,
        pixel_model=_model_source(pixel_model) if "dps" in methods else None,
        size=size,
        resize=resize,
        steps=steps,
        seed=seed,
        preset=preset,
        omega=None if omega is None else float(omega),
        gamma=None if gamma is None else float(gamma),
        sigma_y=float(sigma_y),
        sr_mode=sr_mode,
    )
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        _check_out(out_dir, cfg)
    rank, world, state = _distributed(device)
    if world > 1 and out_dir is None:
        raise ValueError("out is required for a multi-process run (the processes merge their files there)")

    # ------------------------------------------------------------------ models (after every check)
    from psld.models.loading import load_model

    if state is not None and device is None:
        device = state.device
    models: dict[str, Any] = {}
    for key, m in (
        ("latent", model if latent else None),
        ("pixel", pixel_model if "dps" in methods else None),
    ):
        if m is not None:
            models[key] = m if hasattr(m, "prior") else load_model(m, device=device, dtype=dtype)
    if "pixel" in models and models["pixel"].family != "pixel":
        raise ValueError(
            f"pixel_model {cfg.pixel_model!r} is a latent model (family {models['pixel'].family!r})"
        )
    if "latent" in models and models["latent"].family == "pixel":
        raise ValueError(f"model {cfg.model!r} is a pixel-space model; pass it as --pixel-model for dps")
    for key, m in models.items():
        if size % m.size_multiple:
            raise ValueError(f"size {size} must be a multiple of {m.size_multiple} for the {key} model")
    family = models["latent"].family if "latent" in models else "ldm" if "pixel" in models else "sd"

    # ------------------------------------------------------------------ output folder and resume state
    from psld.evaluation.metrics import psnr, residual, ssim, unavailable_metrics
    from psld.sampler import DivergenceError

    notes = unavailable_metrics()
    done: set[tuple[str, str, str]] = set()
    appender = None
    if out_dir is not None:
        if rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            _write_run_json(out_dir, cfg, sources, tasks, methods, family, world)
        if state is not None:
            state.wait_for_everyone()
        done = {_key(r) for r in _all_rows(out_dir)}
        name = RESULTS if world == 1 else f"results.rank{rank}.jsonl"
        appender = _Appender(out_dir / name)

    units = [(s, t) for s in sources for t in tasks][rank::world]
    entries = [(s, t, m) for s, t in units for m in methods]
    pending = [e for e in entries if (e[0].name, e[1], e[2]) not in done]
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(entries),
        initial=len(entries) - len(pending),
        desc="evaluate" if world == 1 else f"evaluate (process 0 of {world})",
        unit="entry",
        disable=not progress or rank != 0,  # one bar: the main process's share under accelerate
    )
    computed: list[dict] = []
    todo = {(s.name, t): [m for (s2, t2, m) in pending if s2.name == s.name and t2 == t] for s, t in units}
    for source, task in units:
        todo_methods = todo[(source.name, task)]
        if not todo_methods:
            continue
        gt = load_image(source, size, resize)
        x01 = torch.from_numpy(gt).permute(2, 0, 1)[None].to(torch.float32) / 255.0
        op, y, seed_e = simulate(task, x01, cfg, source.name, family)
        if out_dir is not None:
            _atomic_png(x01[0], out_dir / "gt" / f"{source.name}.png")
            ymeas = ((y + 1) / 2).clamp(0, 1)
            if ymeas.dim() == 4:
                _atomic_png(ymeas[0], out_dir / task / "measurement" / f"{source.name}.png")
        truth = gt.astype(np.float64) / 255.0
        for method in todo_methods:
            t0 = time.perf_counter()
            try:
                result, info = _run_method(method, task, op, x01, y, seed_e, models, cfg)
                res_np = result[0].permute(1, 2, 0).double().numpy()
                scores = {
                    "psnr": psnr(res_np, truth),
                    "ssim": ssim(res_np, truth),
                    "residual": residual(op, result, y),
                }
            except DivergenceError as exc:  # one diverged run is a result (a row), not the end of the set
                result, info = None, {}
                message = " ".join(str(exc).split())
                scores = {"psnr": None, "ssim": None, "residual": None, "diverged": message}
            row = {
                "image": source.name,
                "task": task,
                "method": method,
                **scores,
                "seconds": time.perf_counter() - t0,
                "seed": seed_e,
                **info,
                "config": cfg.fingerprint(),
                "rank": rank,
                "finished": time.time(),
            }
            if out_dir is not None:
                if result is not None:
                    _atomic_png(result[0], out_dir / task / method / f"{source.name}.png")
                appender.append(row)
            computed.append(row)
            bar.update(1)
    bar.close()

    if out_dir is None:
        return EvalResult(rows=computed, out=None, notes=notes)
    if state is not None:
        state.wait_for_everyone()
    wanted = {(s.name, t, m) for s in sources for t in tasks for m in methods}
    if rank == 0:
        rows = _merge(out_dir, sources, tasks, methods)
        from psld.evaluation.report import write_reports

        write_reports(out_dir, [r for r in rows if _key(r) in wanted], sources, tasks, methods, notes)
    if state is not None:
        state.wait_for_everyone()
    rows = [r for r in read_rows(out_dir / RESULTS) if _key(r) in wanted]
    return EvalResult(rows=rows, out=out_dir, notes=notes)


def _run_method(method, task, op, x01, y, seed, models, cfg) -> tuple[torch.Tensor, dict]:
    """The restored image ``[1, 3, H, W]`` in [0, 1] (CPU, float32) and the settings used."""
    if method == "pinv":
        with torch.no_grad():
            x = op.pinv(y)
        return ((x.float() + 1) / 2).clamp(0, 1).cpu(), {"steps": None, "omega": None, "gamma": None}
    from psld.restore import solve

    model = models["pixel" if method == "dps" else "latent"]
    config = _config_for(method, task, model, cfg)
    out = solve(
        x01,
        op,
        model=model,
        simulate=True,
        sigma_y=cfg.sigma_y,
        seed=seed,
        config=config,
        output_type="pt",
        progress=False,
    )
    info = {
        "steps": config.num_steps,
        "omega": config.omega,
        "gamma": config.gamma if method != "ldps" else 0.0,
    }
    return out.images.float().cpu(), info


def _merge(out: Path, sources: list[ImageSource], tasks, methods) -> list[dict]:
    """Merge ``results.jsonl`` and the per-process files into ``results.jsonl`` (atomic), ordered."""
    rows = _all_rows(out)
    order = {
        (s.name, t, m): i
        for i, (s, t, m) in enumerate((s, t, m) for s in sources for t in tasks for m in methods)
    }
    rows.sort(key=lambda r: order.get(_key(r), len(order)))
    _atomic_text("".join(json.dumps(r) + "\n" for r in rows), out / RESULTS)
    for p in out.glob("results.rank*.jsonl"):
        p.unlink()
    return rows


def _write_run_json(out: Path, cfg: EvalConfig, sources, tasks, methods, family: str, world: int) -> None:
    import platform
    import sys
    from importlib import metadata

    import psld

    versions = {"python": sys.version.split()[0], "psld": psld.__version__}
    for pkg in ("torch", "diffusers", "accelerate", "scikit-image", "numpy", "Pillow", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    info = {
        "config": asdict(cfg),
        "fingerprint": cfg.fingerprint(),
        "operator_family": family,
        "tasks": list(tasks),
        "methods": list(methods),
        "images": [{"name": s.name, "source": s.origin} for s in sources],
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "num_processes": world,
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    _atomic_text(json.dumps(info, indent=2) + "\n", out / "run.json")
