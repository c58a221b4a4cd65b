"""SV metrics checked against scikit-learn's roc_curve, brute-force sweeps and hand-made cases."""

import numpy as np
import pytest
from scipy.interpolate import interp1d
from scipy.optimize import brentq
from sklearn.metrics import roc_curve

from nestbench.metrics.sv import as_norm, bootstrap_eer, eer, min_dcf, roc


def _random_trials(seed, n=2000, sep=1.0, ties=False):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.3
    s = rng.normal(size=n) + sep * y
    if ties:
        s = np.round(s, 1)
    return s, y.astype(int)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_roc_matches_sklearn(seed, ties):
    s, y = _random_trials(seed, ties=ties)
    p_fa, p_miss, thr = roc(s, y)
    fpr, tpr, sk_thr = roc_curve(y, s, drop_intermediate=False)
    np.testing.assert_allclose(p_fa, fpr)
    np.testing.assert_allclose(p_miss, 1 - tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [False, True])
def test_eer_equals_brentq_on_sklearn_roc(seed, ties):
    s, y = _random_trials(seed, ties=ties)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    ref = brentq(lambda x: 1.0 - x - interp1d(fpr, tpr)(x), 0.0, 1.0)
    assert eer(s, y) == pytest.approx(ref, abs=1e-9)


def test_eer_extremes_and_scale_invariance():
    assert eer([0.9, 0.8, 0.1, 0.2], [1, 1, 0, 0]) == 0.0
    assert eer([0.1, 0.2, 0.9, 0.8], [1, 1, 0, 0]) == 1.0
    s, y = _random_trials(7)
    assert eer(3 * s + 1, y) == pytest.approx(eer(s, y))


def _brute_force_min_dcf(s, y, p):
    tgt, non = s[y == 1], s[y == 0]
    best = np.inf
    for t in np.r_[np.unique(s), np.inf]:
        cost = np.mean(tgt < t) * p + np.mean(non >= t) * (1 - p)
        best = min(best, cost)
    return best / min(p, 1 - p)


@pytest.mark.parametrize("p_target", [0.01, 0.05, 0.5])
@pytest.mark.parametrize("seed", range(3))
def test_min_dcf_matches_brute_force_sweep(seed, p_target):
    s, y = _random_trials(seed, n=600, ties=seed == 2)
    assert min_dcf(s, y, p_target) == pytest.approx(_brute_force_min_dcf(s, y, p_target))


def test_min_dcf_normalisation():
    # Uninformative scores: the best is to reject or accept everything: normalised cost 1.
    y = np.array([1, 0] * 50)
    assert min_dcf(np.zeros(100), y, 0.01) == pytest.approx(1.0)
    # Perfect separation costs nothing.
    assert min_dcf(y.astype(float), y, 0.05) == 0.0
    # One target below all non-targets out of 4 targets: P_miss = 0.25 at the best threshold,
    # cost 0.25 * 0.01, normalised by 0.01.
    s = np.array([0.9, 0.8, 0.7, -1.0, 0.1, 0.2, 0.3])
    assert min_dcf(s, [1, 1, 1, 1, 0, 0, 0], 0.01) == pytest.approx(0.25)


def test_bootstrap_interval_brackets_eer_and_shrinks_with_more_trials():
    s, y = _random_trials(1, n=500)
    low, high = bootstrap_eer(s, y, n_resamples=500)
    assert low <= eer(s, y) <= high
    s2, y2 = _random_trials(1, n=8000)
    low2, high2 = bootstrap_eer(s2, y2, n_resamples=500)
    assert high2 - low2 < high - low
    assert bootstrap_eer(s, y, n_resamples=200, seed=3) == bootstrap_eer(
        s, y, n_resamples=200, seed=3
    )


def test_as_norm_on_a_hand_made_cohort():
    # 2-D embeddings; cohort of 4 unit vectors. Enroll e = (1, 0), test t = (0, 1).
    cohort = np.array([[1, 0], [0, 1], [-1, 0], [0, -1]], dtype=float)
    e, t = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    # Cohort similarities of e: [1, 0, -1, 0]; top-2: [1, 0] -> mean 0.5, std 0.5. Same for t.
    out = as_norm(np.array([0.2]), e, t, cohort, top_n=2)
    assert out[0] == pytest.approx(0.5 * ((0.2 - 0.5) / 0.5 + (0.2 - 0.5) / 0.5))
    # top_n larger than the cohort uses all of it: mean 0, std sqrt(0.5).
    out = as_norm(np.array([0.2]), e, t, cohort, top_n=100)
    assert out[0] == pytest.approx(0.2 / np.sqrt(0.5))


def test_bad_inputs():
    with pytest.raises(ValueError, match="both target"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="3 scores but 2 labels"):
        eer([0.1, 0.2, 0.3], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        eer([0.1, np.nan], [1, 0])
