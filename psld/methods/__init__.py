"""The method registry: every solver is a configuration of the one sampler core.

``psld``, ``gml``, ``ldps`` and ``dps`` are :class:`psld.config.PSLDConfig` with that ``method``; the
latent solvers that followed PSLD are :class:`psld.hooks.MethodConfig` subclasses (one file each):
``resample`` (:mod:`.resample`), ``mpgd`` (:mod:`.mpgd`), ``stsl`` (:mod:`.stsl`), ``daps``
(:mod:`.daps`) and ``diffpir`` (:mod:`.diffpir`). docs/methods.md gives each update rule and its sources.

>>> method_config("mpgd", num_steps=20).num_steps
20
>>> sorted(ALL_METHODS)[:3]
['daps', 'diffpir', 'dps']
"""

from __future__ import annotations

from psld.config import METHODS as CORE_METHODS
from psld.config import PSLDConfig
from psld.hooks import MethodConfig
from psld.methods.daps import DAPSConfig
from psld.methods.diffpir import DiffPIRConfig
from psld.methods.mpgd import MPGDConfig
from psld.methods.resample import ReSampleConfig
from psld.methods.stsl import STSLConfig

#: method name -> its configuration class (hook methods only)
REGISTRY: dict[str, type[MethodConfig]] = {
    cls.NAME: cls for cls in (ReSampleConfig, MPGDConfig, STSLConfig, DAPSConfig, DiffPIRConfig)
}
#: every method the sampler runs, core ones first
ALL_METHODS: tuple[str, ...] = (*CORE_METHODS, *REGISTRY)
#: methods that need a latent autoencoder (all but pixel-space ``dps``)
LATENT_METHODS: tuple[str, ...] = tuple(m for m in ALL_METHODS if m != "dps")

__all__ = [
    "ALL_METHODS",
    "LATENT_METHODS",
    "REGISTRY",
    "config_from_dict",
    "config_class",
    "method_config",
    "DAPSConfig",
    "DiffPIRConfig",
    "MPGDConfig",
    "ReSampleConfig",
    "STSLConfig",
]


def config_class(method: str) -> type[PSLDConfig]:
    """The configuration class of ``method`` (``PSLDConfig`` for the core methods)."""
    if method in CORE_METHODS:
        return PSLDConfig
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(ALL_METHODS)}")
    return REGISTRY[method]


def config_from_dict(data: dict) -> PSLDConfig:
    """The configuration of :meth:`PSLDConfig.to_dict`'s output, of the class ``data["method"]`` names."""
    if not isinstance(data, dict):
        raise ValueError(f"a config dict is expected, got {type(data).__name__}")
    return config_class(str(data.get("method", "psld"))).from_dict(data)


def method_config(method: str, base: PSLDConfig | None = None, **changes) -> PSLDConfig:
    """The configuration of ``method`` with ``changes``.

    With ``base``, a core method gets ``base.replace(method=method, **changes)``; a hook method starts from
    its own defaults and takes only the schedule switches of ``base`` (``timestep_spacing``,
    ``steps_offset``, ``set_alpha_to_one``, ``model_t_offset``: they describe the model, not the method).
    """
    cls = config_class(method)
    if cls is PSLDConfig:
        return (base or PSLDConfig()).replace(method=method, **changes)
    if base is not None:
        shared = ("timestep_spacing", "steps_offset", "set_alpha_to_one", "model_t_offset")
        changes = {**{k: getattr(base, k) for k in shared}, **changes}
        if changes.get("timestep_spacing") == "official":
            changes["timestep_spacing"] = "leading"  # the official rule belongs to PSLD's own code
    return cls(**changes)
