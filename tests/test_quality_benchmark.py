"""benchmarks/quality.py: its statistics and the box-edge band, on hand-made inputs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

_spec = importlib.util.spec_from_file_location(
    "quality", Path(__file__).parents[1] / "benchmarks" / "quality.py"
)
quality = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(quality)


def test_confidence_interval_literal():
    mean, half = quality._ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(1.96 / math.sqrt(3))


def test_box_band_is_the_ring_inside_the_box_edge():
    from psld.operators.inpainting import MaskOperator

    mask = torch.ones(12, 12)
    mask[2:10, 2:10] = 0  # an 8x8 box
    bands = quality._box_band(MaskOperator(mask, (3, 12, 12)), width=2, batch=2)
    assert bands.shape == (2, 1, 12, 12)  # a shared mask serves every image of the batch
    band = bands[1, 0]
    assert band.sum() == 8 * 8 - 4 * 4  # all of the box but its 4x4 centre
    assert not band[4:8, 4:8].any() and band[2, 2] and not band[0, 0]


def test_report_tables(tmp_path):
    rows = [
        dict(task="sr4", method=m, index=i, psnr=p + i, ssim=0.5, residual=0.1, correct=True, steps=25)
        for m, p in (("psld", 21.0), ("ldps", 20.0))
        for i in range(3)
    ]
    main = dict(
        kind="main",
        n=3,
        steps=25,
        rows=rows,
        frechet={"sr4/psld": 1.0, "sr4/ldps": 2.0, "ae": 0.5},
        clean_accuracy=0.9,
    )
    (tmp_path / "m.json").write_text(json.dumps(main))
    text = quality.report([str(tmp_path / "m.json")])
    assert "| sr4 | psld | 22.00 ± 1.13 |" in text
    assert "| sr4 | +1.00 ± 0.00 | — | — |" in text  # paired psld - ldps


def test_psnr_ssim_of_a_batch_literal_values():
    from psld.evaluation.metrics import psnr_ssim

    truth = torch.full((2, 3, 8, 8), 0.5)
    result = truth + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)
    p, s = psnr_ssim(result, truth)
    assert p == pytest.approx([20.0, 40.0]) and len(s) == 2 and s[1] > s[0]
