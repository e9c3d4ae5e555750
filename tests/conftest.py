"""Shared test configuration: hypothesis profiles and offline hub settings.

Profiles (``PSLD_HYPOTHESIS_PROFILE``): ``default`` (derandomized, 15 examples, no deadline), used by
``make test``, CI and plain ``pytest``, so every run tries the same examples; ``thorough`` (300 random
examples) for deep local runs; ``dev`` (15 random examples). ``ci`` is an alias of ``default``.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# The suite runs as `pytest -n 2` on 2 cores: one torch thread per worker. With 2 threads per worker
# OpenMP spin-waiting made tiny float64 ops 100-1000x slower (measured 388 s vs 30 s for one file).
torch.set_num_threads(1)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", max_examples=15, derandomize=True, print_blob=True, **_common)
settings.register_profile("ci", max_examples=15, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=15, derandomize=False, **_common)
settings.register_profile("thorough", max_examples=300, derandomize=False, print_blob=True, **_common)
PROFILES = ("default", "ci", "dev", "thorough")

_profile = os.environ.get("PSLD_HYPOTHESIS_PROFILE") or "default"
if _profile not in PROFILES:
    raise pytest.UsageError(f"PSLD_HYPOTHESIS_PROFILE must be one of {PROFILES}, got {_profile!r}")
settings.load_profile(_profile)


# ------------------------------------------------------------------ tiny diffusers models (no downloads)


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory):
    """Folder of a tiny random Stable Diffusion pipeline (see tests/tiny_models.py)."""
    from tiny_models import build_tiny_sd

    return build_tiny_sd(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture(scope="session")
def tiny_ldm_path(tmp_path_factory):
    """Folder of a tiny random unconditional LDM (UNet2DModel + VQModel + DDIM)."""
    from tiny_models import build_tiny_ldm

    return build_tiny_ldm(tmp_path_factory.mktemp("models") / "tiny-ldm")


@pytest.fixture(scope="session")
def tiny_sd(tiny_sd_path):
    """The tiny SD model loaded through ``psld.load_model`` (CPU, fp32)."""
    import psld

    return psld.load_model(tiny_sd_path, device="cpu")


@pytest.fixture(scope="session")
def tiny_ldm(tiny_ldm_path):
    """The tiny LDM loaded through ``psld.load_model`` (CPU, fp32)."""
    import psld

    return psld.load_model(tiny_ldm_path, device="cpu")
