"""Paired significance of two systems scored on the same items, and the per-item files runs keep.

A run writes ``<split>_items.json`` beside its ``result.json``: for each metric a task scored
with an :class:`~nestbench.metrics.base.ItemMetric`, the per-item components
(:class:`~nestbench.metrics.base.ItemRows`). :func:`paired_bootstrap` resamples the items once for
both systems (Koehn 2004's paired bootstrap; SV trials keep their target / non-target counts), so
the test sees how much of a difference is the luck of the test items. A system with several
seeds is the mean of its seeds' metrics on every resample, the number a leaderboard shows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nestbench.data.manifest import atomic_write_text
from nestbench.metrics.base import ItemRows, resample_weights

ITEMS_SCHEMA = 1


def items_file(split: str) -> str:
    """The name of a run's per-item file of ``split``."""
    return f"{split}_items.json"


def write_items(path: Path, split: str, items: dict[str, ItemRows]) -> None:
    """Write ``{metric name: ItemRows}`` of one eval split atomically."""
    data = {
        "schema": ITEMS_SCHEMA,
        "split": split,
        "metrics": {k: v.to_dict() for k, v in items.items()},
    }
    atomic_write_text(Path(path), json.dumps(data) + "\n")


def read_items(path: Path) -> dict[str, ItemRows]:
    """``{metric name: ItemRows}`` of a ``<split>_items.json`` (ValueError naming the file)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if data.get("schema") != ITEMS_SCHEMA:
            raise ValueError(f"schema {data.get('schema')!r}, expected {ITEMS_SCHEMA}")
        return {k: ItemRows.from_dict(v) for k, v in data["metrics"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not a per-item file ({e})") from e


@dataclass(frozen=True)
class PairedTest:
    """``delta`` = mean(A) - mean(B) on the test items, its bootstrap 95% interval, and the
    two-sided p-value of "no difference"."""

    delta: float
    ci95: tuple[float, float]
    p_value: float
    n_items: int
    n_resamples: int

    def significant(self, alpha: float = 0.05) -> bool:
        return self.p_value < alpha

    def to_dict(self) -> dict:
        return {
            "delta": self.delta,
            "ci95": list(self.ci95),
            "p_value": self.p_value,
            "n_items": self.n_items,
            "n_resamples": self.n_resamples,
        }


def _mean_of_seeds(runs: Sequence[ItemRows], weights: np.ndarray) -> np.ndarray:
    return np.mean([r.resampled(weights) for r in runs], axis=0)


def paired_bootstrap(
    a: Sequence[ItemRows],
    b: Sequence[ItemRows],
    n_resamples: int = 2000,
    seed: int = 0,
    chunk: int = 200,
) -> PairedTest:
    """Paired bootstrap test of system A (its seeds' ItemRows) against system B.

    Every resample draws the N test items with replacement (within strata when the metric has
    them) and scores both systems on the same draw. p = 2 (min(#(d <= 0), #(d >= 0)) + 1) /
    (R + 1), capped at 1: two identical systems get p = 1. ValueError unless every run scored the same N items.
    """
    runs = [*a, *b]
    if not a or not b:
        raise ValueError("paired_bootstrap needs at least one run of each system")
    n = len(runs[0].rows)
    if any(len(r.rows) != n for r in runs):
        raise ValueError(
            f"paired_bootstrap: the runs scored different items ({sorted({len(r.rows) for r in runs})})"
        )
    ones = np.ones((1, n))
    delta = float(_mean_of_seeds(a, ones)[0] - _mean_of_seeds(b, ones)[0])
    rng = np.random.default_rng(seed)
    strata = runs[0].strata()
    diffs = []
    for start in range(0, n_resamples, chunk):
        w = resample_weights(n, min(chunk, n_resamples - start), rng, strata)
        diffs.append(_mean_of_seeds(a, w) - _mean_of_seeds(b, w))
    d = np.concatenate(diffs)
    d = d[np.isfinite(d)]
    if d.size == 0:
        return PairedTest(delta, (float("nan"), float("nan")), float("nan"), n, n_resamples)
    # (k + 1) / (R + 1): a finite number of resamples never proves p = 0
    below, above = int(np.sum(d <= 0)), int(np.sum(d >= 0))
    p = min(1.0, 2.0 * (min(below, above) + 1) / (d.size + 1))
    low, high = np.quantile(d, [0.025, 0.975])
    return PairedTest(delta, (float(low), float(high)), p, n, n_resamples)
