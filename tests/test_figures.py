"""Smoke test of the ``figures`` package: the quick run writes every figure, bad names are rejected."""

from __future__ import annotations

from figures import FIGURES
from figures.__main__ import main

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_quick_run_writes_every_figure(tmp_path, capsys):
    from verification import taesd

    assert main(["--out", str(tmp_path), "--quick"]) == 0
    printed = capsys.readouterr().out.split()
    for name in FIGURES:
        if name == "taesd_fixed_point" and taesd.taesd_folder() is None:
            assert not (tmp_path / f"{name}.png").exists()  # no weights: skipped, nothing written
            continue
        png, pdf = tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"
        assert png.is_file() and pdf.is_file(), name
        assert png.read_bytes()[:8] == PNG_SIGNATURE, name
        assert png.stat().st_size > 10_000, name
        assert pdf.read_bytes()[:5] == b"%PDF-", name
        assert str(png) in printed and str(pdf) in printed


def test_only_selects(tmp_path):
    assert main(["--out", str(tmp_path), "--quick", "--only", "off_manifold"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["off_manifold.pdf", "off_manifold.png"]


def test_unknown_figure_is_rejected(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--only", "bogus"]) == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    assert not any(tmp_path.iterdir())


def test_unsquared_loss_figure(tmp_path):
    assert main(["--out", str(tmp_path), "--quick", "--only", "unsquared_loss"]) == 0
    png = tmp_path / "unsquared_loss.png"
    assert png.read_bytes()[:8] == PNG_SIGNATURE and png.stat().st_size > 10_000
    assert (tmp_path / "unsquared_loss.pdf").read_bytes()[:5] == b"%PDF-"


def test_stability_region_pdf_is_modest(tmp_path):
    """The heat map is rasterized inside the vector PDF (was 2.1 MB as vector cells)."""
    assert main(["--out", str(tmp_path), "--quick", "--only", "stability_region"]) == 0
    assert (tmp_path / "stability_region.pdf").stat().st_size < 300_000
