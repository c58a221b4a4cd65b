"""Metrics as plain functions and small classes, usable without the rest of nestbench.

:mod:`nestbench.metrics.base` holds the one metric shape (per-item components, a value from
their sums, a bootstrap interval over items) and :class:`Score`, the stored form of a metric.
"""

from nestbench.metrics.base import (
    F1,
    Accuracy,
    ErrorRate,
    ItemMetric,
    Score,
    as_score_dict,
    bootstrap_interval,
)
from nestbench.metrics.sv import as_norm, bootstrap_eer, cosine_scores, eer, min_dcf, roc

__all__ = [
    "F1",
    "Accuracy",
    "ErrorRate",
    "ItemMetric",
    "Score",
    "as_norm",
    "as_score_dict",
    "bootstrap_eer",
    "bootstrap_interval",
    "cosine_scores",
    "eer",
    "min_dcf",
    "roc",
]
