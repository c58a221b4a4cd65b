"""A training-free speaker-verification probe: statistics pooling, LDA, cosine scoring.

The probe measures how much speaker information a (frozen) feature sequence carries without
training a network on it, and is the reference a trained SV head should at least match:

1. :func:`pool_stats` turns each utterance's frames [T, D] into one vector [2D]: the mean and the
   standard deviation over its valid frames.
2. :func:`fit_probe` standardises those vectors (per-dimension mean and standard deviation of the
   training vectors) and fits linear discriminant analysis on the training speakers.
3. :func:`probe_scores` projects enrollment and test vectors with it and scores each trial by the
   cosine of the two projections.

Only numpy, scipy/scikit-learn (which nestbench already needs) and torch are used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from sklearn.covariance import ledoit_wolf_shrinkage
from threadpoolctl import threadpool_limits

from nestbench.metrics.sv import eer

__all__ = [
    "FALLBACK_SHRINKAGE",
    "SHRINKAGE_GRID",
    "Probe",
    "fit_probe",
    "pool_stats",
    "probe_scores",
]


def pool_stats(x: torch.Tensor, lengths: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Mean and standard deviation of each utterance over its valid frames.

    Args:
        x: [B, T, D] padded frame features (frames ``lengths[b]`` and later of row b are padding
            and are ignored, whatever their values, NaN and Inf included).
        lengths: [B] valid frames per utterance (integer, clipped to [1, T]).
        eps: floor of the variance before the square root, so a 1-frame (or constant) utterance
            gives a standard deviation of sqrt(eps) rather than NaN, and its gradient stays finite.

    Returns:
        [B, 2D]: ``[mean, std]`` concatenated along the last dimension. The standard deviation is
        the population one (divides by the number of valid frames, not by that number minus one),
        computed in float32 or wider. Differentiable.
    """
    if x.dim() != 3:
        raise ValueError(f"pool_stats expects x [B, T, D], got shape {tuple(x.shape)}")
    b, t, _ = x.shape
    if lengths.shape != (b,):
        raise ValueError(f"pool_stats expects lengths [{b}], got shape {tuple(lengths.shape)}")
    dtype = torch.promote_types(x.dtype, torch.float32)
    x = x.to(dtype)
    n = lengths.to(x.device).long().clamp(1, t)
    valid = (torch.arange(t, device=x.device)[None, :] < n[:, None])[..., None]  # [B, T, 1]
    zero = torch.zeros((), dtype=dtype, device=x.device)
    count = n.to(dtype)[:, None]  # [B, 1]
    # where() rather than multiplying by a mask, so Inf/NaN padding cannot leak in
    mean = torch.where(valid, x, zero).sum(dim=1) / count  # [B, D]
    centred = torch.where(valid, x - mean[:, None], zero)
    var = (centred * centred).sum(dim=1) / count
    return torch.cat([mean, var.clamp_min(eps).sqrt()], dim=-1)


@dataclass
class Probe:
    """A fitted probe: standardisation followed by an LDA projection.

    Attributes:
        mean, scale: [F] the training vectors' per-dimension mean and standard deviation
            (dimensions with no spread get scale 1).
        projection: [F, K] LDA directions (on standardised vectors), K = min(classes - 1, F),
            in decreasing order of between- to within-speaker variance, each scaled to unit
            (shrunk) within-speaker variance.
        ratios: [K] the between- to within-speaker variance ratio of each direction.
        shrinkage: the within-speaker covariance shrinkage that was used (in [0, 1]).
    """

    mean: np.ndarray
    scale: np.ndarray
    projection: np.ndarray
    ratios: np.ndarray
    shrinkage: float

    def transform(self, x: np.ndarray) -> np.ndarray:
        """[M, F] pooled vectors -> [M, K] LDA projections (the training mean maps to 0)."""
        x = _as_matrix(x, "x")
        if x.shape[1] != self.mean.shape[0]:
            raise ValueError(f"probe was fitted on {self.mean.shape[0]} features, got {x.shape[1]}")
        return ((x - self.mean) / self.scale) @ self.projection


def _as_matrix(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [rows, features], got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return a


SHRINKAGE_GRID = (0.0, 1e-4, 1e-3, 1e-2, 1e-1)
"""Candidate shrinkages of ``shrinkage="cv"``."""
FALLBACK_SHRINKAGE = 1e-2
"""The shrinkage of ``shrinkage="cv"`` when it cannot cross-validate (fewer than 4 training
speakers, or no held-out fold with both same- and different-speaker pairs)."""


def _lda(z: np.ndarray, inverse: np.ndarray, num_classes: int, a: float | str):
    """LDA of standardised vectors z [N, F] with class indices [N] -> (shrinkage, [F, K], [K])."""
    n, f = z.shape
    counts = np.bincount(inverse, minlength=num_classes).astype(np.float64)
    means = np.zeros((num_classes, f))
    np.add.at(means, inverse, z)
    means /= counts.clip(1)[:, None]  # [C, F]
    resid = z - means[inverse]  # [N, F] within-speaker residuals
    if a == "lw":
        a = float(ledoit_wolf_shrinkage(resid, assume_centered=True))
    s_w = resid.T @ resid / n
    mu = max(float(np.trace(s_w)) / f, 1e-12)
    # the 1e-6 ridge keeps S_w invertible when N - C < F and no shrinkage is asked for
    s_w = (1.0 - a) * s_w + (a + 1e-6) * mu * np.eye(f)
    centre = counts @ means / n
    d = (means - centre) * np.sqrt(counts / n)[:, None]
    s_b = d.T @ d  # [F, F] between-speaker covariance
    k = min(num_classes - 1, f)
    ratios, vectors = scipy.linalg.eigh(s_b, s_w, subset_by_index=[f - k, f - 1])
    order = np.argsort(ratios)[::-1]
    return float(a), vectors[:, order], ratios[order]


def _cv_shrinkage(z, inverse, num_classes, grid, folds, seed=0, max_heldout=1500):
    """The grid value whose LDA gives the lowest mean EER of all held-out pairs (speaker folds)."""
    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(num_classes) % folds  # speaker -> fold
    fold = fold_of[inverse]
    errors, scored = np.zeros(len(grid)), 0
    for k in range(folds):
        held = np.flatnonzero(fold == k)
        if held.size > max_heldout:
            held = np.sort(rng.choice(held, max_heldout, replace=False))
        rest = np.flatnonzero(fold != k)
        _, fit_inv = np.unique(inverse[rest], return_inverse=True)
        i, j = np.triu_indices(held.size, 1)
        same = (inverse[held][i] == inverse[held][j]).astype(int)
        if same.all() or not same.any():  # e.g. one utterance per speaker: nothing to score
            continue
        scored += 1
        for g, a in enumerate(grid):
            _, proj, _ = _lda(z[rest], fit_inv, int(fit_inv.max()) + 1, a)
            p = z[held] @ proj
            p /= np.linalg.norm(p, axis=1, keepdims=True).clip(1e-12)
            errors[g] += eer((p @ p.T)[i, j], same)
    if not scored:
        return FALLBACK_SHRINKAGE, errors
    return grid[int(np.argmin(errors))], errors / scored


def fit_probe(
    train: np.ndarray,
    train_labels: Sequence,
    shrinkage: float | str = "cv",
    grid: Sequence[float] = SHRINKAGE_GRID,
    folds: int = 5,
) -> Probe:
    """Fit the probe on pooled training vectors.

    Args:
        train: [N, F] training vectors (e.g. :func:`pool_stats` of the training utterances).
        train_labels: [N] their speakers (any hashable values); at least two speakers.
        shrinkage: shrinkage ``a`` of the within-speaker covariance towards a scaled identity,
            ``(1 - a) S_w + a tr(S_w)/F I``:

            - ``"cv"`` (default): the value of ``grid`` with the lowest EER in ``folds``-fold
              cross-validation over the training speakers (speaker-disjoint folds; all pairs of
              the held-out fold's utterances as trials; fewer folds when there are fewer than
              ``2 * folds`` speakers, and :data:`FALLBACK_SHRINKAGE` below 4 speakers);
            - ``"lw"``: the Ledoit-Wolf estimate on the pooled within-speaker residuals;
            - a float in [0, 1] (0: the sample covariance, with a 1e-6 ridge so that it stays
              invertible).
        grid, folds: the candidates and folds of ``"cv"``.

    Returns:
        The fitted :class:`Probe`, projecting to K = min(classes - 1, F) dimensions.

    This is the ``eigen`` solver of sklearn's ``LinearDiscriminantAnalysis`` (directions ``v``
    maximising ``v' S_b v / v' S_w v``, from ``eigh(S_b, S_w)``, scaled to ``v' S_w v = 1``),
    written out so that the shrinkage is a single number on the pooled within-speaker covariance.

    Why cross-validated shrinkage: ``S_w`` of F-dimensional vectors has N - C degrees of freedom
    (960 - 160 = 800 for F = 288 on the embedded corpus; singular when N - C < F). When N - C is
    several times F, the sample covariance (no shrinkage, what sklearn's default ``svd`` solver
    does) is best: speaker information sits partly in directions of small within-speaker variance,
    and shrinking towards the identity, even by 1e-3, or by the Ledoit-Wolf amount (which targets
    the covariance's Frobenius error, not discrimination), costs 1-3 points of EER there
    (with few speakers Ledoit-Wolf can even erase a discriminative direction). When N - C
    approaches or falls below F, the small eigenvalues are underestimated, unregularised LDA
    amplifies noise directions, and some shrinkage wins by as much. No fixed value is right for
    both, so the probe picks it on held-out training speakers, which costs about 25 small fits.
    sklearn's own ``shrinkage="auto"`` is avoided: it shrinks each speaker's covariance
    separately (a handful of utterances a speaker gives near-total shrinkage) and is far slower;
    ``lsqr`` has no ``transform``. Standardising first makes the identity target meaningful and the
    scores invariant to the scale and offset of each input dimension. Linear algebra runs on one
    BLAS thread: the matrices are small, and OpenBLAS's spinning threads make it many times slower
    on a busy machine.
    """
    x = _as_matrix(train, "train")
    labels = np.asarray(list(train_labels))
    if labels.shape[0] != x.shape[0]:
        raise ValueError(f"{x.shape[0]} training vectors but {labels.shape[0]} labels")
    classes, inverse = np.unique(labels, return_inverse=True)
    if classes.size < 2:
        raise ValueError("the probe needs at least two training speakers")
    if isinstance(shrinkage, str):
        if shrinkage not in ("cv", "lw"):
            raise ValueError(f"shrinkage must be 'cv', 'lw' or in [0, 1], got {shrinkage!r}")
        if shrinkage == "cv" and classes.size < 4:
            shrinkage = FALLBACK_SHRINKAGE
    elif not 0.0 <= float(shrinkage) <= 1.0:
        raise ValueError(f"shrinkage must be 'cv', 'lw' or in [0, 1], got {shrinkage!r}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 1e-12 * max(1.0, float(np.abs(mean).max())), scale, 1.0)
    z = (x - mean) / scale
    with threadpool_limits(1, user_api="blas"):
        if shrinkage == "cv":
            folds = max(2, min(int(folds), classes.size // 2))  # >= 2 speakers held out
            shrinkage, _ = _cv_shrinkage(z, inverse, classes.size, tuple(grid), folds)
        a, projection, ratios = _lda(z, inverse, classes.size, shrinkage)
    return Probe(mean=mean, scale=scale, projection=projection, ratios=ratios, shrinkage=a)


def probe_scores(
    train: np.ndarray,
    train_labels: Sequence,
    enroll: np.ndarray,
    test: np.ndarray,
    shrinkage: float | str = "cv",
) -> np.ndarray:
    """Fit the probe on the training vectors and score trials.

    Args:
        train: [N, F] training vectors; train_labels: [N] their speakers.
        enroll, test: [M, F] the two sides of M trials (row i of each forms trial i).
        shrinkage: see :func:`fit_probe`.

    Returns:
        [M] cosine similarity of the LDA projections of ``enroll[i]`` and ``test[i]`` (higher =
        more likely the same speaker). A zero projection scores 0.
    """
    enroll, test = _as_matrix(enroll, "enroll"), _as_matrix(test, "test")
    if enroll.shape != test.shape:
        raise ValueError(f"enroll {enroll.shape} and test {test.shape} differ in shape")
    probe = fit_probe(train, train_labels, shrinkage)
    e, t = probe.transform(enroll), probe.transform(test)
    e = e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)
    t = t / np.linalg.norm(t, axis=1, keepdims=True).clip(1e-12)
    return np.einsum("mk,mk->m", e, t)
