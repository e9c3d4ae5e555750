"""Measurement operators: one family per file, all following :class:`LinearOperator`."""

from psld.operators.base import LinearOperator, cg_solve

__all__ = ["LinearOperator", "cg_solve"]
