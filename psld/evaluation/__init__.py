"""``psld evaluate`` / :func:`psld.evaluate`: tasks x methods over an image set, with metrics, tables,
figures, resume and multi-process scale-out (see :mod:`psld.evaluation.runner`)."""

from psld.evaluation.runner import EvalResult, evaluate

__all__ = ["evaluate", "EvalResult"]
