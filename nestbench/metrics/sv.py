"""Speaker-verification metrics: ROC, EER, normalised minDCF, AS-norm, bootstrap intervals.

Definitions (see ``../shared/spec/METRICS.md``):

- ROC: every distinct score is a threshold; a trial is accepted when ``score >= threshold``
  (the convention of ``sklearn.metrics.roc_curve``). P_miss = 1 - TPR, P_fa = FPR.
- EER: the point where P_miss and P_fa cross on the ROC, linearly interpolated between the two
  ROC points around the crossing. This equals NeMo's ``brentq`` on the interpolated ROC and lies
  within one ROC step of speechbrain's ``EER`` (which picks the closest ROC point).
- minDCF (NIST, normalised): ``min_t [C_miss P_miss(t) P_tgt + C_fa P_fa(t) (1 - P_tgt)] /
  min(C_miss P_tgt, C_fa (1 - P_tgt))``, C_miss = C_fa = 1; reported at P_tgt = 0.01 and 0.05.
- AS-norm: ``0.5 [(s - mu_e) / sigma_e + (s - mu_t) / sigma_t]`` with the mean and standard
  deviation of each side's top-N cohort scores.
"""

from __future__ import annotations

import numpy as np

from nestbench.metrics.base import ItemMetric, ItemRows, Score, bootstrap_interval


def _as_arrays(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(labels).ravel().astype(bool)
    if s.shape != y.shape:
        raise ValueError(f"{s.size} scores but {y.size} labels")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or Inf")
    if y.all() or not y.any():
        raise ValueError("need both target (1) and non-target (0) trials")
    return s, y


def _roc_counts(s: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None):
    """Cumulative accepted targets / non-targets at each distinct threshold, high to low.

    weights: optional [R, N] trial multiplicities (bootstrap resamples); the result is then
    [R, K+1]. Returns (tp, fp, thresholds) with a leading (0, 0, +inf) point.
    """
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]
    w = np.ones((1, s.size)) if weights is None else np.asarray(weights, dtype=np.float64)[:, order]
    tp = np.cumsum(w * y, axis=1)[:, last_of_tie]
    fp = np.cumsum(w * ~y, axis=1)[:, last_of_tie]
    zero = np.zeros((w.shape[0], 1))
    thresholds = np.r_[np.inf, s[last_of_tie]]
    return np.hstack([zero, tp]), np.hstack([zero, fp]), thresholds


def roc(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC of verification scores.

    Args:
        scores: [N] similarity scores (higher = more likely the same speaker).
        labels: [N] 1 for target (same speaker), 0 for non-target.

    Returns:
        (p_fa [K+1], p_miss [K+1], thresholds [K+1]) from threshold +inf (accept nothing) down to
        the lowest score (accept everything).
    """
    s, y = _as_arrays(scores, labels)
    tp, fp, thresholds = _roc_counts(s, y)
    return fp[0] / (~y).sum(), 1.0 - tp[0] / y.sum(), thresholds


def _eer_from_rates(p_fa: np.ndarray, p_miss: np.ndarray) -> np.ndarray:
    """EER of each row of [R, K] ROC rates (p_fa rising, p_miss falling along K)."""
    p_fa, p_miss = np.atleast_2d(p_fa), np.atleast_2d(p_miss)
    i = np.argmax(p_miss <= p_fa, axis=1)  # first crossing; i >= 1 since p_miss[0] = 1 > 0
    rows = np.arange(p_fa.shape[0])
    a0, a1 = p_fa[rows, i - 1], p_fa[rows, i]
    b0, b1 = p_miss[rows, i - 1], p_miss[rows, i]
    denom = (a1 - a0) - (b1 - b0)
    t = np.divide(b0 - a0, denom, out=np.ones_like(denom), where=denom != 0)
    return a0 + t * (a1 - a0)


def eer(scores, labels) -> float:
    """Equal error rate (a fraction in [0, 1]); see the module docstring for the definition."""
    p_fa, p_miss, _ = roc(scores, labels)
    return float(_eer_from_rates(p_fa, p_miss)[0])


def min_dcf(
    scores, labels, p_target: float = 0.01, c_miss: float = 1.0, c_fa: float = 1.0
) -> float:
    """Normalised minimum detection cost (NIST SRE definition; 1.0 = the trivial system)."""
    p_fa, p_miss, _ = roc(scores, labels)
    dcf = c_miss * p_miss * p_target + c_fa * p_fa * (1 - p_target)
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1 - p_target)))


def eer_threshold(scores, labels) -> float:
    """The score threshold closest to the EER point (for reporting decisions)."""
    p_fa, p_miss, thresholds = roc(scores, labels)
    k = int(np.argmin(np.abs(p_fa - p_miss)[1:])) + 1
    return float(thresholds[k])


def bootstrap_eer(
    scores, labels, n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of the EER, resampling trials with replacement.

    Goes through the shared :func:`nestbench.metrics.base.bootstrap_interval`, stratified by
    label (target and non-target trials resampled separately, so both classes are present in
    every resample). Vectorised: each resample is a row of trial multiplicities, and the trials
    are sorted once per chunk of resamples.

    Returns:
        (low, high) bounds of the ``confidence`` interval.
    """
    s, y = _as_arrays(scores, labels)

    def statistic(weights: np.ndarray) -> np.ndarray:
        tp, fp, _ = _roc_counts(s, y, weights)
        return _eer_from_rates(fp / fp[:, -1:], 1.0 - tp / tp[:, -1:])

    return bootstrap_interval(statistic, s.size, n_resamples, confidence, seed, strata=y)


class TrialEER(ItemMetric):
    """The EER of trials (items: ``score`` and ``target`` 1/0) as an :class:`ItemMetric`, so the
    paired tests of :mod:`nestbench.metrics.paired` treat it like the summed metrics. Not a sum:
    :meth:`weighted` computes the ROC of each resample; resamples keep the target / non-target
    counts (``strata``)."""

    components = ("score", "target")

    @classmethod
    def weighted(cls, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.float64)
        tp, fp, _ = _roc_counts(rows[:, 0], rows[:, 1] > 0.5, np.atleast_2d(weights))
        return _eer_from_rates(fp / fp[:, -1:], 1.0 - tp / tp[:, -1:])

    @classmethod
    def strata(cls, rows: np.ndarray) -> np.ndarray:
        return (np.asarray(rows)[:, 1] > 0.5).astype(int)


def eer_score(scores, labels, n_resamples: int = 1000, seed: int = 0) -> Score:
    """The EER in percent with its bootstrap interval (``n_resamples=0``: none) and its trials."""
    s, y = _as_arrays(scores, labels)
    ci = bootstrap_eer(s, y, n_resamples=n_resamples, seed=seed) if n_resamples > 0 else None
    cls = TrialEER
    items = ItemRows(f"{cls.__module__}:{cls.__qualname__}", cls.components, np.c_[s, y])
    return Score(eer(s, y), ci, items).scaled(100)


def cosine_scores(enroll: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of [N, E] enrollment and [N, E] test embeddings -> [N]."""
    e = enroll / np.linalg.norm(enroll, axis=1, keepdims=True).clip(1e-12)
    t = test / np.linalg.norm(test, axis=1, keepdims=True).clip(1e-12)
    return np.einsum("ne,ne->n", e, t)


def as_norm(
    scores,
    enroll: np.ndarray,
    test: np.ndarray,
    cohort: np.ndarray,
    top_n: int = 300,
    block_elements: int = 1 << 24,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm) of cosine scores.

    Args:
        scores: [N] raw scores of the trials.
        enroll, test: [N, E] the trials' embeddings.
        cohort: [C, E] cohort embeddings (training speakers, never test ones).
        top_n: cohort scores kept per side (the N closest); clipped to C.

    Trials are scored against the cohort in blocks of ``block_elements`` similarities (128 MB
    of float64), so memory stays bounded for any N and C.

    Returns:
        [N] normalised scores.
    """

    def l2(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)

    cohort = l2(np.asarray(cohort, dtype=np.float64))
    k = min(top_n, cohort.shape[0])

    def stats(x):
        x = np.asarray(x, dtype=np.float64)
        mean, std = np.empty(len(x)), np.empty(len(x))
        rows = max(1, block_elements // max(1, cohort.shape[0]))  # [rows, C] float64 at a time
        for i in range(0, len(x), rows):
            sims = l2(x[i : i + rows]) @ cohort.T  # [rows, C]
            top = -np.partition(-sims, k - 1, axis=1)[:, :k]
            mean[i : i + rows], std[i : i + rows] = top.mean(axis=1), top.std(axis=1)
        return mean, std.clip(1e-12)

    mu_e, sd_e = stats(enroll)
    mu_t, sd_t = stats(test)
    s = np.asarray(scores, dtype=np.float64)
    return 0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)
