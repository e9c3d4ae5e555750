"""Shared test configuration: hypothesis profiles and offline hub settings.

Profiles: ``ci`` (derandomized, bounded, no deadline) is selected when ``CI=true``; ``thorough`` (many
examples) with ``PSLD_HYPOTHESIS_PROFILE=thorough``; ``dev`` otherwise.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("ci", max_examples=15, derandomize=True, print_blob=True, **_common)
settings.register_profile("dev", max_examples=15, **_common)
settings.register_profile("thorough", max_examples=300, **_common)

_profile = os.environ.get("PSLD_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") == "true" else "dev")
settings.load_profile(_profile)
