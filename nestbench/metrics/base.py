"""One metric shape for every task, as pyannote.metrics does it, and one bootstrap.

A corpus-level metric is per-item components (errors and reference words of each utterance,
missed/false-alarm/confused and total speech of each session, correct and total of each
prediction, tp/fp/fn of each sentence) and a function from the summed components to the value.
So every such metric gets its value and a percentile-bootstrap 95% interval over items from the
same place: :meth:`ItemMetric.score`. Metrics that are not sums (SV's EER over trials) give
:func:`bootstrap_interval` their own statistic of item weights.

A reported metric is a :class:`Score`: ``{"value": v, "ci95": [lo, hi]}`` (no ``ci95`` where no
interval is defined). A Score made by a metric also carries its :class:`ItemRows` (the per-item
components and the metric that sums them), which a run stores beside its result
(``<split>_items.json``), so a reader can recompute the value and test two runs on the same
items against each other (:mod:`nestbench.metrics.paired`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class ItemRows:
    """The per-item data a metric value is computed from.

    ``rows`` [N, K] holds the components (``components``, K names) of the N items (utterances,
    sessions, recordings, trials); ``metric`` is the ``module:Class`` of the :class:`ItemMetric`
    that turns them into the value, which is then multiplied by ``scale``.
    """

    metric: str
    components: tuple[str, ...]
    rows: np.ndarray
    scale: float = 1.0

    def metric_class(self) -> type[ItemMetric]:
        return metric_class(self.metric)

    def resampled(self, weights: np.ndarray) -> np.ndarray:
        """[R] the metric (times ``scale``) on each row of item multiplicities ``weights`` [R, N]."""
        return self.metric_class().weighted(self.rows, np.atleast_2d(weights)) * self.scale

    def value(self) -> float:
        return float(self.resampled(np.ones((1, len(self.rows))))[0])

    def strata(self) -> np.ndarray | None:
        """[N] labels a bootstrap must resample separately (SV: target / non-target), or None."""
        return self.metric_class().strata(self.rows)

    def to_dict(self) -> dict:
        return {
            "metric": self.metric,
            "components": list(self.components),
            "scale": self.scale,
            "rows": np.asarray(self.rows).tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> ItemRows:
        rows = np.asarray(data["rows"], dtype=np.float64).reshape(-1, len(data["components"]))
        return cls(str(data["metric"]), tuple(data["components"]), rows, float(data["scale"]))


def metric_class(path: str) -> type[ItemMetric]:
    """The :class:`ItemMetric` subclass named ``module:Class`` (ValueError otherwise)."""
    module, _, name = str(path).partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"metric {path!r}: not importable ({e})") from e
    if not (isinstance(cls, type) and issubclass(cls, ItemMetric)):
        raise ValueError(f"metric {path!r}: not an ItemMetric")
    return cls


@dataclass(frozen=True)
class Score:
    """One reported metric value, with its 95% interval when one is defined, and the per-item
    data it came from when a metric made it (not part of the stored value)."""

    value: float
    ci95: tuple[float, float] | None = None
    items: ItemRows | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict:
        out: dict = {"value": self.value}
        if self.ci95 is not None:
            out["ci95"] = [float(self.ci95[0]), float(self.ci95[1])]
        return out

    def scaled(self, factor: float) -> Score:
        ci = None if self.ci95 is None else (self.ci95[0] * factor, self.ci95[1] * factor)
        items = self.items
        if items is not None:
            items = ItemRows(items.metric, items.components, items.rows, items.scale * factor)
        return Score(self.value * factor, ci, items)


def as_score_dict(value) -> dict:
    """A metric as stored in a result: a Score, a ``{"value", ...}`` dict or a plain number."""
    if isinstance(value, Score):
        return value.to_dict()
    if isinstance(value, dict):
        if "value" not in value:
            raise ValueError(f"a metric dict needs a 'value' key, got {sorted(value)}")
        return value
    if isinstance(value, bool | int):
        return {"value": int(value)}
    return {"value": float(value)}


def resample_weights(
    n_items: int,
    n_resamples: int,
    rng: np.random.Generator,
    strata: np.ndarray | None = None,
) -> np.ndarray:
    """[R, N] multiplicities of a bootstrap: each row resamples the N items with replacement
    (within each stratum separately when ``strata`` [N] is given, keeping every stratum's size)."""
    if strata is None:
        return rng.multinomial(n_items, np.full(n_items, 1.0 / n_items), n_resamples).astype(
            np.float64
        )
    weights = np.zeros((n_resamples, n_items))
    for s in np.unique(strata):
        idx = np.flatnonzero(strata == s)
        weights[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1.0 / idx.size), n_resamples)
    return weights


def bootstrap_interval(
    statistic: Callable[[np.ndarray], np.ndarray],
    n_items: int,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    strata: Sequence | np.ndarray | None = None,
    chunk: int = 100,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic over items.

    Args:
        statistic: maps item weights [R, N] (each row a resample's multiplicities) to the
            statistic of each resample [R]; vectorised, so the data are touched once per chunk.
        n_items: N.
        n_resamples, confidence, seed: the bootstrap's size, level and random seed.
        strata: optional [N] labels resampled separately (SV: target and non-target trials).
        chunk: resamples per call of ``statistic`` (bounds memory at chunk x N floats).

    Returns:
        (low, high). NaN resamples (a statistic undefined on that resample) are ignored.
    """
    if n_items < 1:
        raise ValueError("bootstrap_interval needs at least one item")
    rng = np.random.default_rng(seed)
    strata = None if strata is None else np.asarray(strata)
    values = []
    for start in range(0, n_resamples, chunk):
        r = min(chunk, n_resamples - start)
        values.append(np.asarray(statistic(resample_weights(n_items, r, rng, strata)), float))
    stats = np.concatenate(values)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return float(low), float(high)


class ItemMetric:
    """A corpus-level metric from per-item components (pyannote.metrics style).

    Subclasses name their ``components`` and define :meth:`compute` from summed components
    [..., K] to values [...] (vectorised: it serves the value and every bootstrap resample).
    ``add`` one item at a time (or ``extend`` with a [N, K] array); ``value()``, ``interval()``
    and ``score()`` report.
    """

    components: tuple[str, ...] = ()

    def __init__(self):
        self.rows: list[list[float]] = []

    def add(self, **components: float) -> None:
        unknown = set(components) - set(self.components)
        missing = set(self.components) - set(components)
        if unknown or missing:
            raise ValueError(
                f"{type(self).__name__} takes components {self.components}, got {sorted(components)}"
            )
        self.rows.append([float(components[c]) for c in self.components])

    def extend(self, rows: np.ndarray) -> None:
        """Add N items at once: rows [N, K] in the order of ``components``."""
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.components):
            raise ValueError(f"expected [N, {len(self.components)}] rows, got {rows.shape}")
        self.rows.extend(rows.tolist())

    def __len__(self) -> int:
        return len(self.rows)

    def matrix(self) -> np.ndarray:
        """[N, K] the components of every item."""
        return np.asarray(self.rows, dtype=np.float64).reshape(-1, len(self.components))

    def totals(self) -> dict[str, float]:
        return dict(zip(self.components, self.matrix().sum(axis=0).tolist(), strict=True))

    def compute(self, totals: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @classmethod
    def weighted(cls, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """[R] the metric of items ``rows`` [N, K] counted ``weights`` [R, N] times (a sum of
        components by default; metrics that are not sums override it)."""
        return cls().compute(weights @ rows)

    @classmethod
    def strata(cls, rows: np.ndarray) -> np.ndarray | None:
        """[N] strata a bootstrap keeps the sizes of (None: resample all items together)."""
        return None

    def value(self) -> float:
        return float(self.weighted(self.matrix(), np.ones((1, len(self))))[0])

    def interval(
        self, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
    ) -> tuple[float, float]:
        m = self.matrix()
        return bootstrap_interval(
            lambda w: self.weighted(m, w), len(m), n_resamples, confidence, seed, self.strata(m)
        )

    def item_rows(self, scale: float = 1.0) -> ItemRows:
        cls = type(self)
        return ItemRows(
            f"{cls.__module__}:{cls.__qualname__}", self.components, self.matrix(), scale
        )

    def score(self, n_resamples: int = 1000, scale: float = 1.0, seed: int = 0) -> Score:
        """The value and its bootstrap interval (``n_resamples=0``: no interval), times ``scale``,
        carrying its :class:`ItemRows`."""
        if not self.rows:
            raise ValueError(f"{type(self).__name__}: no items to score")
        ci = self.interval(n_resamples, seed=seed) if n_resamples > 0 else None
        return Score(self.value(), ci, self.item_rows()).scaled(scale)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


class ErrorRate(ItemMetric):
    """errors / total (WER, CER, DER, frame error rate)."""

    components = ("errors", "total")

    def compute(self, totals):
        return _ratio(totals[..., 0], totals[..., 1])


class Accuracy(ItemMetric):
    """correct / total."""

    components = ("correct", "total")

    def compute(self, totals):
        return _ratio(totals[..., 0], totals[..., 1])


class F1(ItemMetric):
    """Micro F1 = 2 tp / (2 tp + fp + fn) (SLU-F1 sums fractional tp/fp/fn)."""

    components = ("tp", "fp", "fn")

    def compute(self, totals):
        tp, fp, fn = totals[..., 0], totals[..., 1], totals[..., 2]
        return _ratio(2 * tp, 2 * tp + fp + fn)
