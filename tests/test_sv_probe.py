"""The SV probe (nestbench.tasks.sv.probe): statistics pooling and the LDA + cosine scorer."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from nestbench.tasks.sv.probe import FALLBACK_SHRINKAGE, fit_probe, pool_stats, probe_scores

from nestbench.metrics.sv import eer


def test_pool_stats_matches_hand_computation_and_ignores_padding():
    x = torch.full((2, 4, 2), 1e6)  # padding is a huge value: any leak shows
    x[0, :3] = torch.tensor([[1.0, 2.0], [3.0, 2.0], [5.0, 8.0]])
    x[1, :1] = torch.tensor([[7.0, -1.0]])
    out = pool_stats(x, torch.tensor([3, 1]))
    assert out.shape == (2, 4)
    # row 0: mean (3, 4); population std: sqrt(8/3) and sqrt(8)
    expected0 = torch.tensor([3.0, 4.0, (8 / 3) ** 0.5, 8**0.5])
    torch.testing.assert_close(out[0], expected0, rtol=1e-6, atol=1e-6)
    # row 1: one frame -> its values and a (near) zero std, never NaN
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1, :2], torch.tensor([7.0, -1.0]))
    assert float(out[1, 2:].abs().max()) < 1e-3


def test_pool_stats_padding_values_do_not_matter_and_gradients_are_finite():
    torch.manual_seed(0)
    x = torch.randn(3, 6, 5)
    lengths = torch.tensor([6, 2, 1])
    y = x.clone()
    y[1, 2:] = float("nan")
    y[2, 1:] = float("inf")
    torch.testing.assert_close(pool_stats(x, lengths), pool_stats(y, lengths))
    # each row equals pooling the unpadded frames alone
    for b, n in enumerate(lengths.tolist()):
        alone = pool_stats(x[b : b + 1, :n], torch.tensor([n]))
        torch.testing.assert_close(pool_stats(x, lengths)[b : b + 1], alone)
    x1 = torch.randn(2, 1, 4, requires_grad=True)  # 1-frame utterances: std floor
    pool_stats(x1, torch.tensor([1, 1])).sum().backward()
    assert torch.isfinite(x1.grad).all()


def _speakers(rng, n_speakers, per_speaker, dim, signal_dims, spread, nuisance=0):
    """Vectors of speakers whose means differ only in the first ``signal_dims`` dimensions.

    Within-speaker noise is standard normal, except in the last ``nuisance`` dimensions where
    its standard deviation is 5 (session/channel variation that raw cosine scoring cannot ignore).
    """
    means = np.zeros((n_speakers, dim))
    means[:, :signal_dims] = spread * rng.standard_normal((n_speakers, signal_dims))
    labels = np.repeat(np.arange(n_speakers), per_speaker)
    noise = rng.standard_normal((labels.size, dim))
    noise[:, dim - nuisance :] *= 5.0
    return means[labels] + noise, labels


def _trials(rng, x, labels, n=1000):
    """n random trials, half target, half non-target: (enroll, test, target labels)."""
    e_idx, t_idx, y = [], [], []
    while len(y) < n:
        i, j = rng.integers(0, len(labels), 2)
        same = labels[i] == labels[j]
        if i == j or (same != (len(y) % 2 == 0)):
            continue
        e_idx.append(i)
        t_idx.append(j)
        y.append(int(same))
    return x[e_idx], x[t_idx], np.array(y)


def test_probe_separates_unseen_speakers_and_uses_the_labels():
    good, raw, few, shuffled = [], [], [], []
    for seed in range(3):
        rng = np.random.default_rng(seed)
        # identity in 6 of 30 dimensions, large nuisance in 5; trial speakers are unseen
        train, train_labels = _speakers(rng, 20, 10, 30, 6, 3.0, nuisance=5)
        trial_x, trial_labels = _speakers(rng, 30, 6, 30, 6, 3.0, nuisance=5)
        enroll, test, y = _trials(rng, trial_x, trial_labels)
        good.append(eer(probe_scores(train, train_labels, enroll, test), y))
        raw.append(eer(np.einsum("md,md->m", enroll, test), y))  # cosine without the probe
        # 5 training speakers -> K = 4 directions: the labels must pick them
        small, small_labels = _speakers(rng, 5, 40, 30, 3, 3.0, nuisance=5)
        few.append(eer(probe_scores(small, small_labels, enroll, test), y))
        shuffled.append(eer(probe_scores(small, rng.permutation(small_labels), enroll, test), y))
    assert np.mean(good) < 0.13
    assert np.mean(raw) > np.mean(good) + 0.15
    assert np.mean(few) < 0.22
    assert np.mean(shuffled) > np.mean(few) + 0.08


def test_probe_is_at_chance_without_speaker_information():
    rng = np.random.default_rng(1)
    train, train_labels = _speakers(rng, 40, 8, 30, 4, 3.0)
    noise = rng.standard_normal((400, 30))  # trial vectors carry no speaker information
    fake_labels = np.repeat(np.arange(20), 20)
    enroll, test, y = _trials(rng, noise, fake_labels)
    assert 0.4 < eer(probe_scores(train, train_labels, enroll, test), y) < 0.6


def test_probe_scores_are_invariant_to_the_scale_and_offset_of_the_inputs():
    rng = np.random.default_rng(2)
    train, labels = _speakers(rng, 20, 6, 24, 3, 2.0)
    trial_x, _ = _speakers(rng, 10, 4, 24, 3, 2.0)
    enroll, test = trial_x[:20], trial_x[20:]
    base = probe_scores(train, labels, enroll, test)
    assert base.shape == (20,) and np.all(np.abs(base) <= 1 + 1e-9)
    for a, b in ((1e-3, 0.0), (250.0, 0.0), (1.0, 40.0)):
        moved = probe_scores(a * train + b, labels, a * enroll + b, a * test + b)
        np.testing.assert_allclose(moved, base, atol=1e-6)
    # per-dimension scales too (standardisation comes first)
    d = np.exp(rng.normal(0, 2, 24))
    np.testing.assert_allclose(
        probe_scores(train * d, labels, enroll * d, test * d), base, atol=1e-6
    )
    # label names do not matter
    named = np.array([f"spk{i}" for i in labels])
    np.testing.assert_allclose(probe_scores(train, named, enroll, test), base, atol=1e-9)


def test_probe_projects_to_classes_minus_one_and_is_robust_when_n_is_small():
    rng = np.random.default_rng(3)
    train, labels = _speakers(rng, 12, 3, 100, 4, 3.0)  # N = 36 < F = 100
    probe = fit_probe(train, labels)
    assert probe.transform(train).shape == (36, 11)
    scores = probe_scores(train, labels, train[:10], train[10:20])
    assert np.isfinite(scores).all()
    constant = np.hstack([train, np.ones((36, 1))])  # a dimension with no spread
    assert np.isfinite(probe_scores(constant, labels, constant[:5], constant[5:10])).all()
    with pytest.raises(ValueError):
        probe_scores(train, labels[:-1], train[:2], train[2:4])
    with pytest.raises(ValueError):
        probe_scores(train, np.zeros(36), train[:2], train[2:4])


def test_probe_is_fast_at_the_embedded_corpus_size():
    rng = np.random.default_rng(4)
    train, labels = _speakers(rng, 160, 6, 288, 20, 1.0)
    trial_x = rng.standard_normal((2000, 288))
    start = time.perf_counter()
    probe_scores(train, labels, trial_x[:1000], trial_x[1000:])
    assert time.perf_counter() - start < 10.0  # ~1 s on the busy 2-core dev VM (7 s unpinned)


def test_probe_handles_one_utterance_per_speaker():
    rng = np.random.default_rng(5)
    train, labels = _speakers(rng, 30, 1, 20, 3, 2.0)  # no within-speaker variation to learn
    assert fit_probe(train, labels).shrinkage == FALLBACK_SHRINKAGE
    scores = probe_scores(train, labels, train[:10], train[10:20])
    assert scores.shape == (10,) and np.isfinite(scores).all()
