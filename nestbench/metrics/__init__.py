"""Metrics as plain functions, usable without the rest of nestbench."""

from nestbench.metrics.sv import as_norm, bootstrap_eer, cosine_scores, eer, min_dcf, roc

__all__ = ["as_norm", "bootstrap_eer", "cosine_scores", "eer", "min_dcf", "roc"]
