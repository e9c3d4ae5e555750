"""``PSLDConfig.to_dict``/``from_dict``: a JSON round trip gives back the same configuration."""

from __future__ import annotations

import json

import pytest

from psld.config import PSLDConfig


@pytest.mark.parametrize(
    "cfg",
    [
        PSLDConfig(),
        PSLDConfig.official("sr4", "ldm", num_steps=100),
        PSLDConfig.preset("inpaint-box", "sd", num_steps=7, omega=0.25),
        PSLDConfig(method="dps", eta=1.0, loss="squared", glue="pinv", noisy_prediction=True),
    ],
)
def test_json_round_trip(cfg: PSLDConfig) -> None:
    text = json.dumps(cfg.to_dict())
    back = PSLDConfig.from_dict(json.loads(text))
    assert back == cfg
    assert json.loads(text)["omega"] == cfg.omega


def test_to_dict_names_every_field() -> None:
    d = PSLDConfig(num_steps=17, gamma=0.3).to_dict()
    assert d["num_steps"] == 17 and d["gamma"] == 0.3 and d["method"] == "psld"
    assert "timestep_spacing" in d and "model_t_offset" in d


def test_from_dict_missing_fields_take_defaults() -> None:
    assert PSLDConfig.from_dict({"omega": 0.5}) == PSLDConfig(omega=0.5)


@pytest.mark.parametrize(
    "data, match",
    [
        ({"omgea": 1.0}, "omgea"),
        ({"omega": float("inf")}, "omega"),
        ({"method": "nope"}, "method"),
    ],
)
def test_from_dict_refuses_bad_input(data, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PSLDConfig.from_dict(data)


def test_from_dict_refuses_a_non_dict() -> None:
    with pytest.raises(ValueError, match="dict"):
        PSLDConfig.from_dict([("omega", 1.0)])  # type: ignore[arg-type]
