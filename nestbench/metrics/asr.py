"""Word and character error rates at corpus level, with jiwer 4 doing the alignments.

Per utterance, jiwer's ``process_words`` / ``process_characters`` give hits, substitutions,
deletions and insertions; the corpus rate is (S + D + I) / (H + S + D) summed over utterances
(what ``jiwer.wer`` gives for the lists), and its 95% interval is a bootstrap over utterances
through :class:`nestbench.metrics.base.ErrorRate`. An empty reference contributes its
hypothesis's words as insertions and nothing to the denominator; an empty hypothesis deletes the
whole reference. Runs of whitespace count as one space (references and hypotheses alike).
"""

from __future__ import annotations

from collections.abc import Sequence

import jiwer
import numpy as np

from .base import ErrorRate, Score

#: Columns of :func:`edit_counts`.
COUNTS = ("hits", "substitutions", "deletions", "insertions")


def edit_counts(refs: Sequence[str], hyps: Sequence[str], unit: str = "word") -> np.ndarray:
    """[N, 4] hits, substitutions, deletions, insertions of each (reference, hypothesis) pair,
    over words (``unit="word"``, whitespace-split) or characters (``"char"``, spaces included)."""
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    rows = np.zeros((len(refs), 4), dtype=np.int64)
    for i, (r, h) in enumerate(zip(refs, hyps, strict=True)):
        rows[i] = _counts(r, h, unit)
    return rows


def _counts(ref: str, hyp: str, unit: str) -> tuple[int, int, int, int]:
    ref, hyp = " ".join(ref.split()), " ".join(hyp.split())
    size = (lambda s: len(s.split())) if unit == "word" else len
    if not ref or not hyp:  # jiwer needs both sides: the answer is all deletions/insertions
        return 0, 0, size(ref), size(hyp)
    o = (jiwer.process_words if unit == "word" else jiwer.process_characters)(ref, hyp)
    return o.hits, o.substitutions, o.deletions, o.insertions


def error_rate(counts: np.ndarray, n_resamples: int = 1000, seed: int = 0) -> Score:
    """Corpus error rate in percent, with a bootstrap 95% interval over utterances."""
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 4)
    metric = ErrorRate()
    metric.extend(
        np.stack([counts[:, 1:].sum(1), counts[:, :3].sum(1)], axis=1)  # errors, reference length
    )
    return metric.score(n_resamples, scale=100.0, seed=seed)


def wer_cer(
    refs: Sequence[str], hyps: Sequence[str], n_resamples: int = 1000, seed: int = 0
) -> dict:
    """``wer``, ``cer`` (Scores, percent) and the word-level ``substitutions``, ``deletions``,
    ``insertions`` and ``reference_words`` totals."""
    words = edit_counts(refs, hyps, "word")
    chars = edit_counts(refs, hyps, "char")
    totals = words.sum(0)
    return {
        "wer": error_rate(words, n_resamples, seed),
        "cer": error_rate(chars, n_resamples, seed),
        "substitutions": int(totals[1]),
        "deletions": int(totals[2]),
        "insertions": int(totals[3]),
        "reference_words": int(totals[:3].sum()),
    }
