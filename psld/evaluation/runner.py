""":func:`psld.evaluate`: tasks x methods over an image set, with resume and multi-process scale-out.

The work is split by responsibility: :mod:`~psld.evaluation.checks` (every input, before any model
loads or anything is written), :mod:`~psld.evaluation.entries` (entries, units, seeds),
:mod:`~psld.evaluation.methods` (sampler configurations, the shared measurement, one run),
:mod:`~psld.evaluation.loop` (rows and files of each unit), :mod:`~psld.evaluation.store` (the JSONL
results) and :mod:`~psld.evaluation.report` (summary and figures). This module wires them together.

**Outputs** under ``out``: ``gt/<image>.png`` (the ground-truth crop), ``<task>/measurement/<image>.png``,
``<task>/<method>/<image>.png``, ``results.jsonl`` (one JSON object per entry), ``run.json``,
``summary.md``/``summary.csv`` and ``figures/<task>.png``/``.pdf``. Every file is written all or
nothing (:func:`psld.files.atomic_write`); a row is appended only after its PNG exists, so a run
killed at any moment loses at most the entry in flight. A failed write (a full disk) stops the run
with one ``ValueError`` line; the entries finished before it are kept for a resume.

**Resume.** Entries already in ``results.jsonl`` (or in a ``results.rank<k>.jsonl`` left by a killed
multi-process run) are skipped and the temporary files a killed run left are removed. A run holds an
exclusive lock on the folder (``.psld.lock``): a second run into it at the same time is refused.
See :mod:`~psld.evaluation.checks` for which earlier runs a folder accepts.

**Scale-out.** Under ``accelerate launch --multi_gpu --num_processes N`` (``WORLD_SIZE > 1``; on a
machine without CUDA the processes run on the CPU with gloo) the main process loads each model first
(the others then read a warm cache), process ``k`` takes the (image, task) units ``k, k + N, ...``,
appends to ``results.rank<k>.jsonl``; after a barrier the main process merges them into
``results.jsonl`` and writes the summary and figures.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from psld.evaluation.checks import Checked, check_inputs, check_loaded, check_out, read_run
from psld.evaluation.entries import Key, entry_seed, key, pending, units
from psld.evaluation.loop import run_units
from psld.evaluation.methods import LATENT_METHODS, METHODS
from psld.evaluation.report import markdown, summarize, write_reports
from psld.evaluation.store import RESULTS, Appender, all_rows, merge, read_rows, results_file

__all__ = ["evaluate", "EvalResult", "OutputError", "entry_seed", "read_rows", "METHODS", "LATENT_METHODS"]


class OutputError(ValueError):
    """Writing an output failed (a full disk, a vanished folder): one line, exit 2 in ``psld``."""


@dataclass
class EvalResult:
    """Rows of an evaluation (one dict per entry) with their summary; ``out`` is the folder or ``None``.

    ``computed`` lists the entries this call computed (the others were found in ``out``).
    """

    rows: list[dict]
    out: Path | None = None
    notes: dict[str, str] | None = None
    computed: list[Key] = field(default_factory=list)

    def summary(self) -> list[dict]:
        """Mean and std per (task, method) of psnr/ssim/residual/seconds, with the best marked."""
        return summarize(self.rows)

    def to_markdown(self) -> str:
        return markdown(self.summary(), self.notes or {})


# ---------------------------------------------------------------------------------------------- processes
def _distributed(device: Any) -> tuple[int, int, Any]:
    """``(rank, world, state)``: accelerate's ``PartialState`` under a multi-process launch, else one process.

    On a machine without CUDA (or with ``device="cpu"``) the processes join a gloo group on the CPU.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from accelerate import PartialState

        cpu = not torch.cuda.is_available() or (device is not None and torch.device(device).type == "cpu")
        state = PartialState(cpu=cpu)
        return state.process_index, state.num_processes, state
    return 0, 1, None


def _barrier(state: Any) -> None:
    if state is not None:
        state.wait_for_everyone()


def load_models(c: Checked, state: Any = None) -> dict[str, Any]:
    """Each model the methods need (objects as given), loaded on the main process first.

    Under accelerate (``state``) the main process loads while the others wait
    (``state.main_process_first()``), so a cold hub cache is filled once, not raced.
    """
    from psld.models.loading import load_model

    device = c.device if c.device is not None or state is None else state.device
    first = state.main_process_first() if state is not None else contextlib.nullcontext()
    models = {}
    with first:
        for role, m in c.models.items():
            models[role] = m if hasattr(m, "prior") else load_model(m, device=device, dtype=c.dtype)
    for role, m in models.items():
        check_loaded(c, role, m)
    return models


# ---------------------------------------------------------------------------------------------- folder
def _run_json(c: Checked, world: int) -> dict:
    """``run.json``: the shared settings, every task/method's model and sampler config, and the machine."""
    import platform
    import sys
    from importlib import metadata

    assert c.out is not None
    old = read_run(c.out) or {}
    versions: dict[str, str | None] = {"python": sys.version.split()[0], "psld": c.settings.version}
    for pkg in ("torch", "diffusers", "accelerate", "scikit-image", "numpy", "Pillow", "matplotlib"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    images = {i["name"]: i for i in old.get("images", [])}
    images.update({s.name: {"name": s.name, "source": s.origin} for s in c.sources})
    return {
        "config": asdict(c.settings),
        "entries": {**old.get("entries", {}), **c.entries},
        "operator_family": c.family,
        "tasks": list(dict.fromkeys([*old.get("tasks", []), *c.tasks])),
        "methods": list(dict.fromkeys([*old.get("methods", []), *c.methods])),
        "images": list(images.values()),
        "versions": versions,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "num_processes": world,
        },
        "started": old.get("started") or time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


@contextlib.contextmanager
def _open_folder(c: Checked, rank: int, world: int, state: Any) -> Iterator[Appender]:
    """Create and lock ``out`` (each process its own lock file), re-check it under the lock, remove the
    temporaries of killed runs, write ``run.json`` (main process), and yield this process's appender."""
    from psld.files import atomic_write_text, lock_folder, remove_stale_temporaries

    assert c.out is not None
    c.out.mkdir(parents=True, exist_ok=True)
    with lock_folder(c.out, ".psld.lock" if rank == 0 else f".psld.rank{rank}.lock"):
        if rank == 0:
            check_out(c)  # again, under the lock: another run may have written run.json meanwhile
            remove_stale_temporaries(c.out)
            atomic_write_text(c.out / "run.json", json.dumps(_run_json(c, world), indent=2) + "\n")
        _barrier(state)
        yield Appender(results_file(c.out, rank, world))


@contextlib.contextmanager
def _output_errors(out: Path | None) -> Iterator[None]:
    """An ``OSError`` while writing under ``out`` as one :class:`OutputError` line."""
    try:
        yield
    except OSError as exc:
        where = exc.filename if exc.filename else out
        raise OutputError(
            f"out: writing {str(where)!r} failed: {exc.strerror or exc}; nothing partial was left, the "
            "entries finished before are kept (rerun to resume)"
        ) from None


# ---------------------------------------------------------------------------------------------- evaluate
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
    ``sigma_y`` is the noise std in [0, 1] units. Every input is checked before any model loads and
    before anything is written (:mod:`psld.evaluation.checks`). See the module docstring for outputs,
    resume and multi-process runs.
    """
    c = check_inputs(
        images, tasks, model=model, methods=methods, pixel_model=pixel_model, out=out, size=size,
        resize=resize, steps=steps, seed=seed, preset=preset, omega=omega, gamma=gamma, sigma_y=sigma_y,
        sr_mode=sr_mode, device=device, dtype=dtype,
    )  # fmt: skip
    rank, world, state = _distributed(c.device)
    if world > 1 and c.out is None:
        raise ValueError("out is required for a multi-process run (the processes merge their files there)")
    models = load_models(c, state)
    check_out(c)  # the model-dependent part, for models whose settings were known only after loading
    from psld.evaluation.metrics import unavailable_metrics

    notes = unavailable_metrics()
    names = [s.name for s in c.sources]
    mine = units(names, c.tasks, rank, world)
    order = [(i, t, m) for i in names for t in c.tasks for m in c.methods]
    bar = _bar(len(mine) * len(c.methods), world, progress and rank == 0)
    if c.out is None:
        todo = pending(mine, c.methods, set())
        with contextlib.closing(bar):
            rows = _run(c, todo, models, None, None, rank, bar)
        return EvalResult(rows=rows, out=None, notes=notes, computed=[key(r) for r in rows])
    with _output_errors(c.out), _open_folder(c, rank, world, state) as appender:
        todo = pending(mine, c.methods, {key(r) for r in all_rows(c.out)})
        bar.update(len(mine) * len(c.methods) - sum(len(ms) for _, _, ms in todo))
        with contextlib.closing(bar):
            computed = _run(c, todo, models, c.out, appender, rank, bar)
        _barrier(state)
        if rank == 0:
            wanted = set(order)
            rows = [r for r in merge(c.out, order) if key(r) in wanted]
            write_reports(c.out, rows, c.sources, c.tasks, c.methods, notes)
        _barrier(state)
    rows = [r for r in read_rows(c.out / RESULTS) if key(r) in set(order)]
    return EvalResult(rows=rows, out=c.out, notes=notes, computed=[key(r) for r in computed])


def _bar(total: int, world: int, enabled: bool):
    from tqdm.auto import tqdm

    desc = "evaluate" if world == 1 else f"evaluate (process 0 of {world})"
    return tqdm(total=total, desc=desc, unit="entry", disable=not enabled)


def _run(c, todo, models, out, appender, rank, bar) -> list[dict]:
    return run_units(c, todo, models, out=out, appender=appender, rank=rank, on_row=lambda _: bar.update(1))
