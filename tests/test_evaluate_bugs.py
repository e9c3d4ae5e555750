"""The bugs issue 17 found in ``psld evaluate``, each pinned through the public API (``psld.evaluate``,
``psld.cli.main``): a refused input writes nothing and loads no model, a resumed folder accepts what
it should (methods added, the same model under another spelling) and refuses what it should (other
code or settings), a busy folder, stale temporaries, a full disk, and the loss an unguided run logs."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import psld
import psld.models.loading

TINY = dict(size=16, steps=1, seed=3, progress=False)


class ModelLoaded(Exception):
    """Raised by the patched loader: a check that should have come first did not."""


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("p", "q"):
        Image.fromarray((rng.random((24, 24, 3)) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    return folder


@pytest.fixture
def no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise ModelLoaded("a model was loaded before every check ran")

    monkeypatch.setattr(psld.models.loading, "load_model", refuse)


def _cli(capsys, argv: list[str]) -> str:
    """Run ``psld`` in-process; it must exit 2 with one ``psld: error:`` line, which is returned."""
    from psld.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("psld: error:") and "\n" not in err, err
    return err


def _argv(images: Path, out: Path, *extra: str, model: str | None = None, methods: str = "psld,pinv"):
    argv = ["evaluate", "--images", str(images), "-t", "sr4", "--methods", methods, "-o", str(out)]
    argv += ["--no-progress", "--size", "16"]
    return argv + (["--model", model] if model else []) + list(extra)


# ---------------------------------------------------------------------------------------------- #2, #9
@pytest.mark.parametrize(
    ("flag", "value"),
    [("--sigma-y", "inf"), ("--omega", "inf"), ("--gamma", "inf"), ("--omega", "nan"), ("--sigma-y", "-1")],
)
def test_non_finite_weights_are_refused_before_any_model_loads(
    images, tmp_path, capsys, no_loading, tiny_ldm_path, flag, value
):
    out = tmp_path / "out"
    err = _cli(capsys, _argv(images, out, flag, value, model=str(tiny_ldm_path)))
    assert flag.lstrip("-").replace("-", "_") in err and "finite non-negative" in err, err
    assert not out.exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--size", "7"), "size must be an integer >= 8, got 7"),
        (("--steps", "0"), "steps must be an integer >= 1, got 0"),
        (("--seed", "1.5"), "expected an integer, got '1.5'"),
        (("--steps", "100000"), "steps must be at most 1000"),
        (("--steps", "300", "--preset", "official"), "steps 300 cannot run psld on sr4"),
        (("--size", "20"), "size 20 must be a multiple of 8"),
    ],
)
def test_limits_are_checked_before_loading_or_writing(
    images, tmp_path, capsys, no_loading, tiny_ldm_path, extra, message
):
    out = tmp_path / "out"
    err = _cli(capsys, _argv(images, out, *extra, model=str(tiny_ldm_path)))
    assert message in err, err
    assert not out.exists()


def test_steps_the_scheduler_refuses_are_refused_before_anything_is_written(
    images, tmp_path, capsys, tiny_ldm_path, tiny_ldm, monkeypatch
):
    """A ``steps_offset=1`` scheduler: evaluate's pre-check agrees with the schedule the sampler builds."""
    from psld.config import PSLDConfig
    from psld.sampler import schedule_for

    model = tmp_path / "offset-model"
    shutil.copytree(tiny_ldm_path, model)
    sched = model / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps({**json.loads(sched.read_text()), "steps_offset": 1}))
    config = PSLDConfig.preset("sr4", "ldm").replace(
        **{**tiny_ldm.scheduler_settings(), "steps_offset": 1}, num_steps=1000
    )
    try:
        schedule_for(config, tiny_ldm.prior.alphas_cumprod)
        sampler_refuses = False
    except ValueError:
        sampler_refuses = True
    out = tmp_path / "out"
    monkeypatch.setattr(
        psld.models.loading, "load_model", lambda *a, **k: (_ for _ in ()).throw(ModelLoaded())
    )
    if sampler_refuses:
        err = _cli(capsys, _argv(images, out, "--steps", "1000", model=str(model)))
        assert "steps 1000 cannot run psld on sr4" in err, err
    else:  # every check passed: the loader is reached, and still nothing is written
        with pytest.raises(ModelLoaded):
            psld.evaluate(
                str(images), "sr4", model=str(model), methods="psld", out=str(out), size=16, steps=1000
            )
    assert not out.exists()


# ---------------------------------------------------------------------------------------------- #5, #12
def test_resume_accepts_the_same_model_spelled_otherwise_and_pinv_only_or_added_methods(
    images, tmp_path, tiny_ldm_path, monkeypatch
):
    out = tmp_path / "out"
    monkeypatch.chdir(tiny_ldm_path.parent)
    relative = os.path.join("..", tiny_ldm_path.parent.name, tiny_ldm_path.name)
    first = psld.evaluate(str(images), "sr4", model=relative, methods="psld,pinv", out=str(out), **TINY)
    spelled = str(tiny_ldm_path.absolute()) + "/"
    again = psld.evaluate(str(images), "sr4", model=spelled, methods="psld,pinv", out=str(out), **TINY)
    pinv_only = psld.evaluate(str(images), "sr4", methods="pinv", out=str(out), **TINY)
    remembered = json.loads((out / "run.json").read_text())["entries"]  # the pinv-only run kept psld's
    assert remembered["sr4/psld"]["model"] == str(tiny_ldm_path.absolute())
    added = psld.evaluate(str(images), "sr4", model=spelled, methods="psld,ldps,pinv", out=str(out), **TINY)
    assert len(first.computed) == 4
    assert again.computed == [] and again.rows == first.rows
    assert pinv_only.computed == [] and len(pinv_only.rows) == 2
    assert sorted(added.computed) == [("p", "sr4", "ldps"), ("q", "sr4", "ldps")] and len(added.rows) == 6
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and len({(r["image"], r["method"]) for r in rows}) == 6
    with pytest.raises(ValueError, match=r"sr4/psld: sampler.num_steps 1 -> 2"):  # psld is still pinned
        psld.evaluate(str(images), "sr4", model=spelled, methods="psld", out=str(out), **{**TINY, "steps": 2})


def test_rows_and_run_json_record_the_resolved_sampler_config_and_version(
    images, tmp_path, tiny_ldm_path, tiny_ldm
):
    from psld.config import PSLDConfig

    out = tmp_path / "out"
    result = psld.evaluate(
        str(images), "sr4", model=str(tiny_ldm_path), methods="psld,ldps,pinv", out=str(out), **TINY
    )
    preset = PSLDConfig.preset("sr4", "ldm").replace(**tiny_ldm.scheduler_settings(), num_steps=1)
    run = json.loads((out / "run.json").read_text())
    for r in result.rows:
        assert r["version"] == psld.__version__ == run["config"]["version"]
        entry = run["entries"][f"sr4/{r['method']}"]
        # the fingerprint as documented: SHA-256 of the shared settings and the entry, 16 hex digits
        text = json.dumps({"settings": run["config"], "entry": entry}, sort_keys=True)
        assert r["config"] == hashlib.sha256(text.encode()).hexdigest()[:16]
        if r["method"] == "pinv":
            assert entry == {"model": None, "sampler": None} and r["sampler"] is None
            continue
        expected = preset.replace(method=r["method"]).to_dict()
        assert entry == {"model": str(tiny_ldm_path.absolute()), "sampler": expected}
        assert r["sampler"] == expected and PSLDConfig.from_dict(r["sampler"]).to_dict() == expected
        assert r["steps"] == 1 and r["omega"] == expected["omega"]
        assert r["gamma"] == (preset.gamma if r["method"] == "psld" else 0.0)  # ldps has no glue
    assert preset.gamma > 0 and len({r["config"] for r in result.rows if r["image"] == "p"}) == 3


def test_resume_refuses_another_psld_version_or_scheduler_setting(
    images, tmp_path, tiny_ldm_path, monkeypatch
):
    model = tmp_path / "model"
    shutil.copytree(tiny_ldm_path, model)
    out = tmp_path / "out"
    psld.evaluate(str(images), "sr4", model=str(model), methods="psld", out=str(out), **TINY)
    before = (out / "results.jsonl").read_bytes()
    monkeypatch.setattr(psld, "__version__", "99.0")
    with pytest.raises(ValueError, match=r"another configuration \(version '0\.1\.0' -> '99\.0'\)"):
        psld.evaluate(str(images), "sr4", model=str(model), methods="psld", out=str(out), **TINY)
    monkeypatch.undo()
    sched = model / "scheduler" / "scheduler_config.json"
    sched.write_text(json.dumps({**json.loads(sched.read_text()), "timestep_spacing": "trailing"}))
    with pytest.raises(ValueError, match=r"sr4/psld: sampler.timestep_spacing 'leading' -> 'trailing'"):
        psld.evaluate(str(images), "sr4", model=str(model), methods="psld", out=str(out), **TINY)
    assert (out / "results.jsonl").read_bytes() == before


# ---------------------------------------------------------------------------------------------- #13, #11
def test_a_folder_in_use_by_another_run_is_refused_in_one_line(images, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".psld.lock", "a+") as held:  # another run holds the folder
        held.write("4242")
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        err = _cli(capsys, _argv(images, out, methods="pinv"))
        assert "in use by another run (pid 4242)" in err, err
        assert sorted(p.name for p in out.iterdir()) == [".psld.lock"]
    psld.evaluate(str(images), "sr4", methods="pinv", out=str(out), **TINY)  # released: accepted
    assert len((out / "results.jsonl").read_text().splitlines()) == 2


def test_resume_removes_the_temporaries_a_killed_run_left(images, tmp_path):
    out = tmp_path / "out"
    psld.evaluate(str(images), "sr4", methods="pinv", out=str(out), **TINY)
    stale = [
        out / "sr4" / "pinv" / ".p.4242.tmp.png",
        out / "gt" / ".q.4242.tmp.png",
        out / ".run.4242.tmp.json",
    ]
    for p in stale:
        p.write_bytes(b"\x89PNG half written")
    keep = [out / "sr4" / ".keep", out / ".notes.tmpl"]
    for p in keep:
        p.write_text("user file")
    again = psld.evaluate(str(images), "sr4", methods="pinv", out=str(out), **TINY)
    assert not any(p.exists() for p in stale) and all(p.read_text() == "user file" for p in keep)
    assert again.computed == []


# ---------------------------------------------------------------------------------------------- #10
def test_a_full_disk_is_one_line_exit_2_and_leaves_nothing_partial(images, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real_save = Image.Image.save
    calls = {"n": 0}

    def save(self, fp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # gt p, measurement p, pinv p, then gt q: the disk is full
            if hasattr(fp, "write"):
                fp.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    err = _cli(capsys, _argv(images, out, methods="pinv"))
    assert "No space left on device" in err and "rerun to resume" in err, err
    leftovers = [p for p in out.rglob(".*") if p.name != ".psld.lock"]
    assert leftovers == []
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["image"], r["method"]) for r in rows] == [("p", "pinv")]
    monkeypatch.undo()
    for png in out.rglob("*.png"):
        Image.open(png).load()  # every PNG under a final name is complete
    resumed = psld.evaluate(str(images), "sr4", methods="pinv", out=str(out), **{**TINY, "seed": 0})
    assert resumed.computed == [("q", "sr4", "pinv")]


# ---------------------------------------------------------------------------------------------- #4
def test_an_unguided_run_logs_the_measured_loss_not_zero():
    """omega = 0 (ldps, nothing guides): the logged loss is ||y - A D(z0_hat)|| at each step."""
    from psld.config import PSLDConfig
    from psld.operators import MatrixOperator
    from psld.protocols import Identity
    from psld.schedule import make_alphas_cumprod

    class Prior:
        alphas_cumprod = make_alphas_cumprod("linear", 50, beta_start=1e-3, beta_end=0.1)

        def eps(self, z, t):
            return (1 - float(self.alphas_cumprod[t])) ** 0.5 * z

    g = torch.Generator().manual_seed(0)
    A = torch.randn(3, 5, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, generator=g, dtype=torch.float64) * 4  # ||y|| far from 1
    z0s = []
    out = psld.sample(
        Prior(), Identity(), Identity(), MatrixOperator(A), y,
        config=PSLDConfig(method="ldps", num_steps=6, omega=0.0, gamma=0.0),
        generator=g, latent_shape=(5,), callback=lambda i, t, s: z0s.append(s["z0"].clone()),
    )  # fmt: skip
    by_hand = torch.stack([(y - z0 @ A.T).pow(2).sum(1).sqrt() for z0 in z0s])
    logged = out.losses["measurement"]
    assert logged.shape == (6, 2) and (logged > 0.1).all()
    torch.testing.assert_close(logged, by_hand.to(logged.dtype), rtol=1e-6, atol=0)
