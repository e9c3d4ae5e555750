"""T13: TAESD conversion (raw halves -> save_pretrained) on random weights, the skip rows, the seam band, and,
when real TAESD weights are present, the fixed-point and glue-step findings on one photograph."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from verification import taesd
from verification.checks import t13_taesd_gluing as t13


def real_weights() -> Path | None:
    """The package's TAESD copy or ``PSLD_TAESD`` (a developer sets it; CI has neither and skips)."""
    return taesd.taesd_folder()


def test_convert_raw_round_trip(tmp_path):
    """Random AutoencoderTiny -> raw TAESD key layout (bf16, as the distributed files) -> convert -> load."""
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    torch.manual_seed(0)
    ref = AutoencoderTiny(latent_channels=4)
    enc, dec = {}, {}
    for key, value in ref.state_dict().items():
        half, _, index, rest = key.split(".", 3)
        if half == "encoder":
            enc[f"{index}.{rest}"] = value.to(torch.bfloat16).contiguous()
        else:
            dec[f"{int(index) + 1}.{rest}"] = value.to(torch.bfloat16).contiguous()
    raw = tmp_path / "raw"
    raw.mkdir()
    save_file(enc, str(raw / taesd.RAW[0]))
    save_file(dec, str(raw / taesd.RAW[1]))
    out = taesd.convert_raw(raw, tmp_path / "pretrained")
    assert taesd.is_pretrained_folder(out)
    vae, E, D = taesd.load(out)
    for key, value in ref.state_dict().items():
        got = vae.state_dict()[key]
        assert got.dtype == torch.float32
        assert torch.equal(got, value.to(torch.bfloat16).float()), key
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert E(x).shape == (1, 4, 4, 4) and D(E(x)).shape == (1, 3, 32, 32)


def test_convert_raw_names_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="taesd_encoder"):
        taesd.convert_raw(tmp_path, tmp_path / "out")


def test_skip_rows(monkeypatch):
    monkeypatch.delenv("PSLD_TAESD", raising=False)
    monkeypatch.setattr(taesd, "taesd_folder", lambda: None)
    for level, reason in (("default", "thorough"), ("thorough", "no TAESD weights")):
        (row,) = t13.check(level=level)
        assert row.statement.startswith("skipped") and reason in row.statement and row.measured == "skipped"


def test_seam_band_geometry():
    x = torch.zeros(1, 3, 64, 64)
    op, y, band = t13.box_setup(x, 32, width=3)
    assert int(band.sum()) == (32 + 6) ** 2 - (32 - 6) ** 2
    inside = op.forward(torch.ones_like(x))[0, 0] == 0  # masked pixels
    assert bool(inside[band].any()) and bool((~inside)[band].any())  # the band straddles the edge


@pytest.mark.skipif(real_weights() is None, reason="no TAESD weights (psld.models.builtin or PSLD_TAESD)")
def test_taesd_findings_on_one_photograph():
    _, E, D = taesd.load(real_weights())
    x = t13.photographs(64, 1)
    with torch.no_grad():
        z = E(x)
    g = torch.Generator().manual_seed(0)
    on = float(t13.residual(E, D, z))
    far = float(t13.residual(E, D, z + 3 * float(z.std()) * torch.randn(z.shape, generator=g)))
    assert 0.05 < on < far
    step = t13.glue_step(E, D, x)
    assert step["glue"] < 0 and step["glue"] < step["ldps"]
