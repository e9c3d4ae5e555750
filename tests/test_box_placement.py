"""The box placement of ``inpaint-box`` is its own setting (``PSLDConfig.box_placement``), independent of
the timestep spacing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import psld

FAST = dict(num_inference_steps=2, progress=False, output_type="pt", simulate=True)


def _image(side: int) -> np.ndarray:
    return np.random.default_rng(side).random((side, side, 3)).astype(np.float32)


def _corner(out: psld.SolveOutput) -> tuple[int, int]:
    hole = (out.operator.mask.reshape(out.operator.mask.shape[-2:]) == 0).nonzero()
    return int(hole[:, 0].min()), int(hole[:, 1].min())


@pytest.mark.parametrize("side", [64, 128])
@pytest.mark.parametrize("spacing", ["official", "leading", "trailing"])
def test_preset_box_stays_centred_whatever_the_spacing(tiny_sd, side, spacing):
    cfg = psld.PSLDConfig.preset("inpaint-box").replace(timestep_spacing=spacing)
    out = psld.solve(_image(side), "inpaint-box", model=tiny_sd, seed=0, config=cfg, **FAST)
    assert _corner(out) == (side // 4, side // 4)  # box side/2, centred


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_official_placement_kept_when_only_the_spacing_changes(tiny_sd, seed):
    side = 128  # box 64: official corners in [16, 48)
    official = psld.PSLDConfig.official("inpaint-box", num_steps=10)
    assert official.box_placement == "official"
    a = psld.solve(_image(side), "inpaint-box", model=tiny_sd, seed=seed, config=official, **FAST)
    changed = official.replace(timestep_spacing="leading", steps_offset=1)
    b = psld.solve(_image(side), "inpaint-box", model=tiny_sd, seed=seed, config=changed, **FAST)
    assert torch.equal(a.operator.mask, b.operator.mask)
    r, c = _corner(a)
    assert 16 <= r < 48 and 16 <= c < 48


def test_official_placement_on_a_preset_draws_the_box_at_random(tiny_sd):
    cfg = psld.PSLDConfig.preset("inpaint-box").replace(box_placement="official")
    corners = {
        _corner(psld.solve(_image(128), "inpaint-box", model=tiny_sd, seed=s, config=cfg, **FAST))
        for s in range(4)
    }
    assert len(corners) > 1 and all(16 <= r < 48 and 16 <= c < 48 for r, c in corners), corners


def test_box_placement_is_validated_and_round_trips():
    with pytest.raises(ValueError, match="box_placement"):
        psld.PSLDConfig(box_placement="random")
    cfg = psld.PSLDConfig(box_placement="official")
    assert psld.PSLDConfig.from_dict(cfg.to_dict()) == cfg
    assert psld.PSLDConfig().box_placement == "centre"
