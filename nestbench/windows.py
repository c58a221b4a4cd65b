"""Long recordings as windows: records with ``offset``/``duration``, and stitching outputs back.

A one-hour session is never one tensor: :func:`cut_windows` turns a record into fixed-length
windows (each an ordinary record that the audio reader, the feature cache and the batcher handle
like any other), and :func:`stitch_frames` puts per-frame window outputs back on the recording's
frame grid, averaging where windows overlap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

#: Keys a window adds to the record it was cut from.
SOURCE_KEY, START_KEY = "window_source", "window_start"


def window_starts(duration: float, length: float, hop: float) -> list[float]:
    """Start times (seconds from the record's start) of windows covering ``duration``.

    Windows start every ``hop`` seconds; the last one ends exactly at the end (it starts earlier
    than the hop grid says when the duration is not a whole number of hops), so every window but
    those of a record shorter than ``length`` is ``length`` long.
    """
    if length <= 0 or hop <= 0:
        raise ValueError(f"window length and hop must be > 0, got {length} and {hop}")
    if duration <= length:
        return [0.0]
    n = math.ceil((duration - length) / hop - 1e-9)
    starts = [k * hop for k in range(n)]
    return [*starts, duration - length]


def cut_windows(records: Sequence[dict], length: float, hop: float | None = None) -> list[dict]:
    """Windows of every record, in record order.

    Args:
        records: records with ``duration`` (and optional ``offset``) in seconds.
        length: window length in seconds.
        hop: seconds between window starts (default: ``length``, no overlap).

    Returns:
        one record per window: a copy of its record with ``offset`` and ``duration`` of the
        window, ``window_source`` (the index of the record in ``records``) and ``window_start``
        (seconds from the start of the record, not of the file).
    """
    hop = length if hop is None else hop
    out = []
    for i, rec in enumerate(records):
        dur = float(rec["duration"])
        base = float(rec.get("offset") or 0.0)
        for start in window_starts(dur, length, hop):
            out.append(
                {
                    **rec,
                    "offset": round(base + start, 6),
                    "duration": round(min(length, dur - start), 6),
                    SOURCE_KEY: i,
                    START_KEY: round(start, 6),
                }
            )
    return out


def num_frames(duration: float, frame_rate: float) -> int:
    """Frames of ``duration`` seconds at ``frame_rate`` (frames per second), rounded down."""
    return int(math.floor(duration * frame_rate + 1e-6))


def stitch_frames(
    windows: Sequence[dict],
    outputs: Sequence[np.ndarray],
    frame_rate: float,
    durations: Sequence[float],
) -> list[np.ndarray]:
    """Per-recording frame outputs from per-window ones.

    Args:
        windows: the window records (:func:`cut_windows` output).
        outputs: per window, an array [T_w, ...] of frame outputs (T_w may fall a frame short of
            the window's length, as encoders round).
        frame_rate: output frames per second.
        durations: the recordings' durations in seconds, indexed by ``window_source``.

    Returns:
        per recording, [T, ...] with T = ``num_frames(duration, frame_rate)``: the mean of the
        windows covering each frame; a frame no window reached takes the value of the next
        covered frame (the last covered one at the end; zeros when nothing is covered).
    """
    if len(windows) != len(outputs):
        raise ValueError(f"{len(windows)} windows but {len(outputs)} outputs")
    sums: list[np.ndarray | None] = [None] * len(durations)
    counts = [np.zeros(num_frames(d, frame_rate)) for d in durations]
    for w, out in zip(windows, outputs, strict=True):
        src = int(w[SOURCE_KEY])
        out = np.asarray(out, dtype=np.float64)
        total = counts[src].shape[0]
        if sums[src] is None:
            sums[src] = np.zeros((total, *out.shape[1:]))
        first = int(round(float(w[START_KEY]) * frame_rate))
        n = max(0, min(out.shape[0], total - first))
        sums[src][first : first + n] += out[:n]
        counts[src][first : first + n] += 1
    stitched = []
    for s, c in zip(sums, counts, strict=True):
        if s is None:
            stitched.append(np.zeros((c.shape[0],)))
            continue
        covered = np.flatnonzero(c > 0)
        if covered.size == 0:
            stitched.append(np.zeros_like(s))
            continue
        shape = (-1,) + (1,) * (s.ndim - 1)
        s[covered] /= c[covered].reshape(shape)
        nearest = covered[
            np.clip(np.searchsorted(covered, np.arange(c.shape[0])), 0, covered.size - 1)
        ]
        stitched.append(s[nearest])
    return stitched
