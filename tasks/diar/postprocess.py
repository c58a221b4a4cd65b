"""From speaker activities to speaker turns, and the dev-split search of their settings.

Per speaker slot (pyannote's ``Binarize`` order): a median filter over ``median_seconds``; a
hysteresis threshold (a turn starts where the activity rises above ``onset`` and lasts while it
stays above ``offset``); each turn padded by ``pad_onset`` before and ``pad_offset`` after
(within the session); gaps shorter than ``min_dur_off`` filled; turns shorter than
``min_dur_on`` removed. Frame t covers [t, t + 1) / frame_rate seconds.

:func:`tune` searches these on the dev split in two stages (thresholds and filter, then padding
and durations, each a grid around the best of the stage before; SUPERB searches median filter x
threshold, NeMo the six values with Optuna over similar ranges), minimising the pooled DER.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
from scipy.ndimage import median_filter

from nestbench.data.rttm import Segment


@dataclass(frozen=True)
class PostProcessing:
    onset: float = 0.5
    offset: float = 0.5
    median_seconds: float = 0.0
    pad_onset: float = 0.0
    pad_offset: float = 0.0
    min_dur_on: float = 0.0
    min_dur_off: float = 0.0

    def to_dict(self) -> dict:
        return {k: round(float(v), 4) for k, v in asdict(self).items()}


#: stage 1: onset x (onset - offset) x median filter; stage 2: paddings x minimum durations
STAGE1 = {
    "onset": (0.3, 0.4, 0.5, 0.6, 0.7),
    "offset_below_onset": (0.0, 0.1, 0.2),
    "median_seconds": (0.0, 0.25, 0.5),
}
STAGE2 = {
    "pad_onset": (0.0, 0.1, 0.2),
    "pad_offset": (0.0, 0.1, 0.2),
    "min_dur_on": (0.0, 0.2, 0.4),
    "min_dur_off": (0.0, 0.2, 0.4),
}


def smooth(probs: np.ndarray, frame_rate: float, median_seconds: float) -> np.ndarray:
    """probs [T, S] median-filtered over time (an odd number of frames; 0 s: unchanged)."""
    k = int(round(median_seconds * frame_rate)) // 2 * 2 + 1
    if k <= 1 or probs.shape[0] == 0:
        return probs
    return median_filter(probs, size=(k, 1), mode="nearest")


def hysteresis(p: np.ndarray, onset: float, offset: float) -> tuple[np.ndarray, np.ndarray]:
    """Start and end frames [K], [K] of the turns of one activity track p [T] (vectorised:
    the runs above ``offset`` that reach ``onset`` somewhere)."""
    on = p > onset
    keep = (p > offset) | on
    edges = np.diff(np.concatenate([[0], keep.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    hits = np.concatenate([[0], np.cumsum(on)])
    reached = hits[ends] - hits[starts] > 0
    return starts[reached], ends[reached]


def clean_turns(
    starts: np.ndarray, ends: np.ndarray, pp: PostProcessing, duration: float
) -> tuple[np.ndarray, np.ndarray]:
    """Seconds [K] of sorted turns of one speaker: padded, short gaps filled, short turns
    removed."""
    if starts.size == 0:
        return starts, ends
    s = np.clip(starts - pp.pad_onset, 0.0, duration)
    e = np.clip(ends + pp.pad_offset, 0.0, duration)
    gaps = s[1:] - e[:-1]
    split = ~((gaps <= 0) | (gaps < pp.min_dur_off))
    first = np.flatnonzero(np.concatenate([[True], split]))  # the first turn of each merge
    s, e = s[first], np.maximum.reduceat(e, first)
    long = (e - s) >= max(pp.min_dur_on, 1e-9)
    return s[long], e[long]


def to_segments(
    uri: str,
    probs: np.ndarray,
    frame_rate: float,
    pp: PostProcessing,
    duration: float,
    offset: float = 0.0,
    smoothed: bool = False,
) -> list[Segment]:
    """Speaker turns of a session's activities probs [T, S] (speakers ``spk0`` ... by slot),
    times from the file's start (``offset``: the session's start in its file)."""
    p = probs if smoothed else smooth(probs, frame_rate, pp.median_seconds)
    segments = []
    for slot in range(p.shape[1]):
        a, b = hysteresis(p[:, slot], pp.onset, pp.offset)
        s, e = clean_turns(a / frame_rate, b / frame_rate, pp, duration)
        segments += [
            Segment(uri, round(offset + x, 3), round(y - x, 3), f"spk{slot}")
            for x, y in zip(s.tolist(), e.tolist(), strict=True)
        ]
    return sorted(segments, key=lambda g: (g.onset, g.speaker))


def tune(
    probs: Sequence[np.ndarray],
    frame_rate: float,
    score: Callable[[list[list[Segment]]], float],
    segments: Callable[[int, np.ndarray, PostProcessing], list[Segment]],
    start: PostProcessing | None = None,
) -> tuple[PostProcessing, float, int]:
    """The post-processing with the lowest ``score`` (pooled DER) on the dev sessions.

    Args:
        probs: per dev session, its activities [T, S].
        score: the DER of per-session hypotheses.
        segments: (session index, smoothed activities, settings) -> that session's turns.
        start: the values stage 1 does not search (pads, minimum durations) start from these
            (default: the defaults).

    Returns:
        the best settings, their score and the number of settings tried.
    """
    best, best_score = start or PostProcessing(), float("inf")
    tried = 0
    smoothed_by = {m: [smooth(p, frame_rate, m) for p in probs] for m in STAGE1["median_seconds"]}
    for median, smoothed in smoothed_by.items():
        for onset, below in itertools.product(STAGE1["onset"], STAGE1["offset_below_onset"]):
            pp = replace(best, onset=onset, offset=round(max(onset - below, 0.05), 3),
                         median_seconds=median)  # fmt: skip
            value = score([segments(i, p, pp) for i, p in enumerate(smoothed)])
            tried += 1
            if value < best_score:
                best, best_score = pp, value
    smoothed = smoothed_by[best.median_seconds]  # stage 1 always sets the filter
    stage1 = best
    for values in itertools.product(*STAGE2.values()):
        pp = replace(stage1, **dict(zip(STAGE2, values, strict=True)))
        value = score([segments(i, p, pp) for i, p in enumerate(smoothed)])
        tried += 1
        if value < best_score:
            best, best_score = pp, value
    return best, best_score, tried
