"""Session-level speaker activity from overlapping windows.

A window's S output slots are its own: slot 0 of one window need not be slot 0 of the next. The
windows of a session are taken in time order; each new window's slots are matched to the
session's slots by the Hungarian algorithm on their mean absolute difference over the frames the
two share (the running average of the windows already placed), permuted, and then every frame is
the mean of the aligned windows covering it (:func:`nestbench.windows.stitch_frames`). Memory is
the session's [T, S] activities, a few floats per frame, whatever the session's length.

A speaker who is silent in a window's overlap is matched by what is left: with at most S
speakers per session and long enough overlaps this is rare, and its cost is confusion, not lost
frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from nestbench.windows import SOURCE_KEY, START_KEY, num_frames, stitch_frames


def align_windows(
    windows: Sequence[dict],
    outputs: Sequence[np.ndarray],
    frame_rate: float,
    durations: Sequence[float],
) -> list[np.ndarray]:
    """Each window's outputs [T_w, S] with its slots permuted to agree with the windows before
    it in its session (same order as ``windows``; see the module docstring)."""
    if len(windows) != len(outputs):
        raise ValueError(f"{len(windows)} windows but {len(outputs)} outputs")
    aligned: list[np.ndarray | None] = [None] * len(windows)
    order = sorted(
        range(len(windows)), key=lambda i: (windows[i][SOURCE_KEY], windows[i][START_KEY])
    )
    sums: dict[int, np.ndarray] = {}
    counts: dict[int, np.ndarray] = {}
    for i in order:
        src = int(windows[i][SOURCE_KEY])
        out = np.asarray(outputs[i], dtype=np.float64)
        total = num_frames(durations[src], frame_rate)
        if src not in sums:
            sums[src] = np.zeros((total, out.shape[1]))
            counts[src] = np.zeros(total)
        first = int(round(float(windows[i][START_KEY]) * frame_rate))
        n = max(0, min(out.shape[0], total - first))
        span = slice(first, first + n)
        shared = counts[src][span] > 0
        if shared.any():
            placed = sums[src][span][shared] / counts[src][span][shared, None]  # [F, S]
            new = out[:n][shared]  # [F, S]
            cost = np.abs(placed[:, :, None] - new[:, None, :]).mean(0)  # [S slots, S window]
            out = out[:, linear_sum_assignment(cost)[1]]
        aligned[i] = out
        sums[src][span] += out[:n]
        counts[src][span] += 1
    return aligned  # type: ignore[return-value]


def stitch_sessions(
    windows: Sequence[dict],
    outputs: Sequence[np.ndarray],
    frame_rate: float,
    durations: Sequence[float],
) -> list[np.ndarray]:
    """Per session, [T, S] speaker activities on its frame grid (T = ``num_frames(duration)``)
    from the windows' [T_w, S] outputs, slots aligned across windows."""
    aligned = align_windows(windows, outputs, frame_rate, durations)
    return stitch_frames(windows, aligned, frame_rate, durations)
