"""benchmarks/methods.py on the tiny random LDM: 2 images, 2 steps, every hook method; the same y for
every method, a table with CIs and cost ratios, and a JSON with one row per (image, task, method)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_methods", ROOT / "benchmarks" / "methods.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bench-images")
    rng = np.random.default_rng(0)
    for i in range(3):
        arr = rng.uniform(0.2, 0.8, (24, 24, 3))
        Image.fromarray((arr * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return folder


def test_smoke_two_images_two_steps(tiny_ldm_path, images, tmp_path, capsys):
    out = tmp_path / "bench.json"
    methods = "psld,resample,mpgd,stsl,daps,diffpir"
    argv = [
        "--model",
        str(tiny_ldm_path),
        "--images",
        str(images),
        "--n",
        "2",
        "--tasks",
        "sr2,inpaint-random",
        "--methods",
        methods,
        "--steps",
        "2",
        "--batch",
        "2",
        "--size",
        "24",
        "--device",
        "cpu",
        "--set",
        "daps.langevin_steps=2",
        "--set",
        "resample.latent_iters=2",
        "--json",
        str(out),
        "--save-dir",
        str(tmp_path / "saved"),
    ]
    assert _bench().main(argv) == 0
    saved = sorted(p.relative_to(tmp_path / "saved").as_posix() for p in (tmp_path / "saved").rglob("*.png"))
    assert len(saved) == 2 * 2 * 6 and "sr2/daps/im1.png" in saved
    assert Image.open(tmp_path / "saved" / "sr2" / "daps" / "im1.png").size == (24, 24)
    table = capsys.readouterr().out
    assert "| task | method | n | PSNR (dB) | SSIM | s / image | cost vs psld |" in table
    data = json.loads(out.read_text())
    assert len(data["rows"]) == 2 * 2 * 6 and all(r["error"] is None for r in data["rows"])
    assert {e["method"] for e in data["summary"]} == set(methods.split(","))
    psld_rows = [e for e in data["summary"] if e["method"] == "psld"]
    assert all(e["cost_vs_ref"] == pytest.approx(1.0) for e in psld_rows)
    assert data["configs"]["sr2"]["daps"]["langevin_steps"] == 2
    assert data["configs"]["sr2"]["mpgd"]["num_steps"] == 2


def test_every_method_sees_the_same_measurement_and_batching_does_not_change_it(tiny_ldm_path):
    bench = _bench()
    x01 = torch.rand(3, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    names = ["a", "b", "c"]
    op, y, _ = bench.problem("inpaint-random", x01, names, "ldm", 0, 0.025, "bicubic")
    op1, y1, _ = bench.problem("inpaint-random", x01[1:2], names[1:2], "ldm", 0, 0.025, "bicubic")
    torch.testing.assert_close(y[1:2], y1)
    assert not torch.equal(y[0], y[1])
    op2, y2, _ = bench.problem("inpaint-random", x01, names, "ldm", 1, 0.025, "bicubic")
    assert not torch.equal(y, y2)  # the seed matters


def test_equal_time_mode_sets_steps_from_the_calibration(tiny_ldm_path, images, tmp_path):
    out = tmp_path / "eq.json"
    argv = [
        "--model",
        str(tiny_ldm_path),
        "--images",
        str(images),
        "--n",
        "2",
        "--tasks",
        "sr2",
        "--methods",
        "psld,mpgd,daps",
        "--steps",
        "3",
        "--batch",
        "2",
        "--size",
        "24",
        "--device",
        "cpu",
        "--set",
        "daps.langevin_steps=3",
        "--equal-time",
        "--calibration-steps",
        "2",
        "--json",
        str(out),
    ]
    assert _bench().main(argv) == 0
    data = json.loads(out.read_text())
    cal = data["equal_time_calibration"]
    assert cal["steps"]["psld"] == 3
    for m in ("mpgd", "daps"):
        assert data["configs"]["sr2"][m]["num_steps"] == cal["steps"][m] >= 1
        expected = max(
            1, round((cal["budget_seconds"] - cal["fixed_seconds"][m]) / cal["seconds_per_step"][m])
        )
        assert cal["steps"][m] == expected
        assert cal["fits"][m] == (
            cal["fixed_seconds"][m] + cal["seconds_per_step"][m] <= cal["budget_seconds"]
        )
    ref = cal["fixed_seconds"]["psld"] + 3 * cal["seconds_per_step"]["psld"]
    assert cal["budget_seconds"] == pytest.approx(ref)


def _report():
    spec = importlib.util.spec_from_file_location(
        "bench_methods_report", ROOT / "benchmarks" / "methods_report.py"
    )
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(methods_psnr: dict[str, list[float]], steps: dict[str, int], task: str = "sr4") -> dict:
    """A hand-made methods.py JSON: per-method PSNR lists over images a, b, c, ... (psld the reference)."""
    rows, summary = [], []
    for m, values in methods_psnr.items():
        for i, v in enumerate(values):
            rows.append(
                {
                    "image": "abcd"[i],
                    "task": task,
                    "method": m,
                    "seconds": 1.0,
                    "error": None,
                    "psnr": v,
                    "ssim": 0.5,
                }
            )
        summary.append(
            {
                "task": task,
                "method": m,
                "n": len(values),
                "failed": 0,
                "psnr": sum(values) / len(values),
                "psnr_ci95": 0.0,
                "ssim": 0.5,
                "ssim_ci95": 0.0,
                "seconds_per_image": 1.0,
                "cost_vs_ref": 1.0,
                "cost_vs_ref_ci95": 0.0,
            }
        )
    return {
        "reference": "psld",
        "rows": rows,
        "summary": summary,
        "configs": {task: {m: {"num_steps": n} for m, n in steps.items()}},
    }


def test_report_pairs_each_method_with_the_reference_of_its_own_file(tmp_path):
    report = _report()
    cheap = _run(
        {"psld": [20.0, 22.0, 24.0, 26.0], "mpgd": [19.0, 23.0, 23.0, 27.0]}, {"psld": 25, "mpgd": 100}
    )
    costly = _run({"psld": [20.0, 22.0], "daps": [23.0, 26.0]}, {"psld": 25, "daps": 50})
    entries = report.collect([("recommended", cheap), ("recommended", costly)])
    by = {e["method"]: e for e in entries}
    assert by["psld"]["n"] == 4  # the reference keeps its larger set
    assert by["daps"]["paired_vs_ref"] == pytest.approx(3.5)  # (3 + 4) / 2 over images a, b only
    assert by["daps"]["paired_vs_ref_ci95"] == pytest.approx(
        12.706 * 0.5, rel=1e-3
    )  # t(0.975, 1) * sd / sqrt 2
    assert by["mpgd"]["paired_vs_ref"] == pytest.approx(0.0)
    assert by["daps"]["steps"] == 50 and by["psld"]["paired_vs_ref"] is None
    text = report.table(entries)
    assert "| sr4 | daps | 50 | 2 | 24.50 ± 0.00 | 0.500 ± 0.000 | +3.50 ± 6.35 | 1 | 1.00 ± 0.00 |" in text
    out = tmp_path / "fig.png"
    report.figure(entries, str(out))
    plain = Image.open(out).size
    assert plain[0] > 300
    # with restorations and a ground truth, the strips widen the figure; a 256-colour PNG
    for m in ("psld", "mpgd"):
        (tmp_path / "saved" / "sr4" / m).mkdir(parents=True)
        Image.new("RGB", (24, 24), (200, 10, 10)).save(tmp_path / "saved" / "sr4" / m / "a.png")
    (tmp_path / "truth").mkdir()
    Image.new("RGB", (24, 24), (10, 200, 10)).save(tmp_path / "truth" / "a.png")
    report.figure(entries, str(out), str(tmp_path / "saved"), "a", str(tmp_path / "truth"))
    with Image.open(out) as im:
        assert im.mode == "P" and im.size[0] > plain[0]


def test_equal_time_steps_model_a_fixed_cost_and_a_cost_per_step():
    bench = _bench()
    per_step = {"psld": 0.4, "cheap": 0.1, "costly": 2.0, "heavy": 0.1}
    fixed = {"psld": 1.0, "cheap": 1.0, "costly": 0.0, "heavy": 20.0}
    budget, steps, fits = bench.allocate_steps(per_step, fixed, "psld", 25)
    assert budget == pytest.approx(11.0)  # 1 + 0.4 * 25
    assert steps == {
        "psld": 25,
        "cheap": 100,
        "costly": 6,
        "heavy": 1,
    }  # (11-1)/0.1, 11/2 = 5.5 -> 6, floor 1
    assert fits == {"psld": True, "cheap": True, "costly": True, "heavy": False}
