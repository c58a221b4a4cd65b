"""SLURP's metrics: scenario, action and intent accuracy, span-F1, the word- and
character-distance span F1s and SLU-F1 (Bastianelli et al. 2020), per recording.

The definitions are those of SLURP's official scorer (``scripts/evaluation`` of
pswietojanski/slurp), recomputed on jiwer 4 and RapidFuzz because the scorer pins jiwer 2.0:

- **scenario / action / intent**: a recording is right when its predicted label equals the gold
  one (intent: ``scenario_action``); the scorer's micro-F1 over one label per recording is this
  accuracy.
- **span-F1**: a predicted ``{type, filler}`` equal to a not yet matched gold entity is a true
  positive, else a false positive; unmatched gold entities are false negatives.
- **distance span F1** (``word``: the filler's WER, jiwer 4; ``char``: the Levenshtein distance
  over the longer filler's length): each predicted entity whose type is among the unmatched gold
  types is matched to the gold entity of that type at the lowest distance d (the first on a tie):
  TP += 1, FP += d, FN += d; a prediction of no unmatched gold type is FP += 1; gold entities
  left over are FN += 1.
- **SLU-F1**: the F1 of the word- and char-level counts summed.

F1 = 2 P R / (P + R) from the summed counts, 0 where there is no true positive (as the scorer).
Unlike the scorer, a recording with no prediction is not skipped: its labels count as wrong
and its gold entities as missed. Each metric is an :class:`~nestbench.metrics.base.ItemMetric`
over recordings, so it has a bootstrap 95% interval over recordings.
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer
import numpy as np
from rapidfuzz.distance import Levenshtein

from nestbench.metrics.base import Accuracy, ItemMetric, Score


def word_distance(truth: str, hypothesis: str) -> float:
    """The WER of a filler (jiwer 4); an empty gold filler: 0 when the hypothesis is empty too,
    else 1 (jiwer refuses an empty reference)."""
    if not truth.split():
        return 0.0 if not hypothesis.split() else 1.0
    if not hypothesis.split():
        return 1.0
    return float(jiwer.wer(truth, hypothesis))


def char_distance(truth: str, hypothesis: str) -> float:
    """Levenshtein distance over the longer string's length (textdistance's
    ``levenshtein.normalized_distance``, which the scorer uses); 0 for two empty strings."""
    return float(Levenshtein.normalized_distance(truth, hypothesis))


DISTANCES = {"word": word_distance, "char": char_distance}


def _f1(tp, fp, fn):
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    den = 2 * tp + fp + fn
    return np.where(tp > 0, 2 * tp / np.where(den > 0, den, 1.0), 0.0)


class SpanF1(ItemMetric):
    """Micro F1 from summed tp / fp / fn, 0 without a true positive (the scorer's rule)."""

    components = ("tp", "fp", "fn")

    def compute(self, totals):
        return _f1(totals[..., 0], totals[..., 1], totals[..., 2])


class SLUF1(ItemMetric):
    """F1 of the word- and char-distance counts summed."""

    components = ("tp_word", "fp_word", "fn_word", "tp_char", "fp_char", "fn_char")

    def compute(self, totals):
        return _f1(
            totals[..., 0] + totals[..., 3],
            totals[..., 1] + totals[..., 4],
            totals[..., 2] + totals[..., 5],
        )


def _entities(ents) -> list[tuple[str, str]]:
    return [(str(e["type"]), str(e["filler"])) for e in ents or []]


def span_counts(gold: Sequence[dict], predicted: Sequence[dict]) -> tuple[float, float, float]:
    """Exact ``{type, filler}`` matching: (tp, fp, fn) of one recording."""
    left = _entities(gold)
    tp = fp = 0
    for ent in _entities(predicted):
        if ent in left:
            left.remove(ent)
            tp += 1
        else:
            fp += 1
    return float(tp), float(fp), float(len(left))


def distance_counts(
    gold: Sequence[dict], predicted: Sequence[dict], distance: str
) -> tuple[float, float, float]:
    """(tp, fp, fn) of one recording with fillers compared by ``distance`` (word | char)."""
    dist = DISTANCES[distance]
    left = _entities(gold)
    tp = fp = fn = 0.0
    for kind, filler in _entities(predicted):
        candidates = [i for i, (t, _) in enumerate(left) if t == kind]
        if not candidates:
            fp += 1
            continue
        costs = [dist(left[i][1], filler) for i in candidates]
        best = int(np.argmin(costs))  # the first of the lowest
        tp += 1
        fp += costs[best]
        fn += costs[best]
        left.pop(candidates[best])
    return tp, fp, fn + len(left)


def slu_scores(
    gold: Sequence[dict], predicted: Sequence[dict | None], n_resamples: int = 1000, seed: int = 0
) -> dict[str, Score]:
    """SLURP's metrics (percent) over recordings.

    Args:
        gold: per recording ``{"scenario", "action", "entities": [{"type", "filler"}]}``.
        predicted: the same per recording, aligned with ``gold``; None where the model gave no
            (parseable) prediction, which counts as wrong.

    Returns:
        ``scenario_accuracy``, ``action_accuracy``, ``intent_accuracy``, ``span_f1``,
        ``word_f1``, ``char_f1`` and ``slu_f1``, each with its bootstrap 95% interval.
    """
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold recordings but {len(predicted)} predictions")
    acc = {k: Accuracy() for k in ("scenario", "action", "intent")}
    span, word, char, slu = SpanF1(), SpanF1(), SpanF1(), SLUF1()
    for g, p in zip(gold, predicted, strict=True):
        p = p or {}
        right = {k: p.get(k) is not None and p.get(k) == g[k] for k in ("scenario", "action")}
        right["intent"] = right["scenario"] and right["action"]
        for k, m in acc.items():
            m.add(correct=float(right[k]), total=1.0)
        ents = p.get("entities") or []
        span.add(**dict(zip(SpanF1.components, span_counts(g["entities"], ents), strict=True)))
        w = distance_counts(g["entities"], ents, "word")
        c = distance_counts(g["entities"], ents, "char")
        word.add(**dict(zip(SpanF1.components, w, strict=True)))
        char.add(**dict(zip(SpanF1.components, c, strict=True)))
        slu.add(**dict(zip(SLUF1.components, (*w, *c), strict=True)))
    metrics = {f"{k}_accuracy": m for k, m in acc.items()}
    metrics.update(span_f1=span, word_f1=word, char_f1=char, slu_f1=slu)
    return {k: m.score(n_resamples, scale=100.0, seed=seed) for k, m in metrics.items()}
