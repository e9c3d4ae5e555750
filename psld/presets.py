"""One preset resolution for every entry point: the task's preset for the model's family, the model's
scheduler settings, then the settings tuned for this model (``LatentModel.presets``, read from the
folder's ``psld_presets.json``)."""

from __future__ import annotations

from typing import Any

from psld.config import PSLDConfig

__all__ = ["model_preset"]


def model_preset(model: Any, task: str, method: str | None = None) -> PSLDConfig:
    """The :class:`PSLDConfig` a run of ``task`` on ``model`` starts from (before user overrides).

    ``model.presets[task]`` may hold PSLDConfig fields for every method, and ``model.presets[task][method]``
    (a nested dict) fields for one method only. A method of :mod:`psld.methods` (``mpgd``, ``daps``, ...)
    starts from its own defaults with the model's scheduler settings and takes only its nested fields.
    """
    family = "ldm" if model.family == "pixel" else model.family
    config = PSLDConfig.preset(task, family).replace(**model.scheduler_settings())
    tuned = dict(getattr(model, "presets", {}).get(task, {}))
    per_method = {k: tuned.pop(k) for k in list(tuned) if isinstance(tuned[k], dict)}
    if method is not None:
        from psld.methods import REGISTRY, config_class, method_config

        config_class(method)  # "unknown method ...; known methods: ..." for a bad name
        if method in REGISTRY:  # its own defaults; only its own tuned fields (the shared ones are PSLD's)
            own = per_method.get(method, {})
            return method_config(method, config, **own)
        config = config.replace(method=method)
        tuned.update(per_method.get(method, {}))
    return config.replace(**tuned) if tuned else config
