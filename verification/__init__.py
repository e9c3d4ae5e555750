"""Each statement of docs/theory.md as a check (predicted vs measured) run through ``psld.sample``."""

from verification.report import run_checks, run_verify
from verification.result import CHECKS, Check, CheckResult, register

__all__ = ["CHECKS", "Check", "CheckResult", "register", "run_checks", "run_verify"]
