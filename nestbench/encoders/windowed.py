"""Long recordings through any encoder in overlapping chunks, so memory does not grow with length.

An encoder with global attention needs memory quadratic in a recording's length (a 30-minute
recording asks NEST for 16 GB). A recording longer than ``chunk + 2 x context`` seconds is
therefore encoded in windows: window ``k`` holds the frames ``[k*H, (k+1)*H)`` (``H`` = the chunk
in frames) plus up to ``C`` frames of context on each side, and only its middle ``H`` frames are
kept, so every kept frame saw at least ``C`` frames of context on both sides (or the recording's
edge). Windows start on the encoder's frame grid (multiples of ``frame_shift`` samples), so the
kept frames line up with those of a whole pass and the frame count is the same. Shorter
recordings are encoded whole, exactly as before. The chunks come out one after the other
(:func:`encode_chunks`), so the feature cache streams them to disk and the live path stitches
them (:func:`forward`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from .base import EncoderOutput


@dataclass(frozen=True)
class Chunking:
    """``chunk_seconds`` kept per window, ``context_seconds`` of context on each side."""

    chunk_seconds: float = 30.0
    context_seconds: float = 5.0

    def __post_init__(self):
        if not self.chunk_seconds > 0 or self.context_seconds < 0:
            raise ValueError(
                f"chunking needs chunk_seconds > 0 and context_seconds >= 0, got "
                f"{self.chunk_seconds} and {self.context_seconds}"
            )

    def frames(self, frame_shift: int, sample_rate: int) -> tuple[int, int]:
        """(H, C): the chunk and the context in encoder frames (H at least 1)."""
        step = frame_shift / sample_rate
        return max(1, round(self.chunk_seconds / step)), max(0, round(self.context_seconds / step))

    def applies(self, seconds: float) -> bool:
        """Whether a recording of ``seconds`` is encoded in windows (longer than one window)."""
        return seconds > self.chunk_seconds + 2 * self.context_seconds

    def describe(self) -> dict:
        return {"chunk_seconds": self.chunk_seconds, "context_seconds": self.context_seconds}


@dataclass(frozen=True)
class Window:
    """Samples ``[start, stop)`` of the recording; keep the window's output frames from
    ``keep_from`` on, ``keep`` of them (None: to the end of its output)."""

    start: int
    stop: int
    keep_from: int
    keep: int | None


def plan_windows(num_samples: int, frame_shift: int, chunk: int, context: int) -> list[Window]:
    """The windows of a recording of ``num_samples`` for chunks of ``chunk`` frames with
    ``context`` frames on each side (see the module docstring)."""
    total = math.ceil(num_samples / frame_shift)  # frames on the grid (the last one partial)
    count = max(1, math.ceil(total / chunk))
    windows = []
    for k in range(count):
        first = max(0, k * chunk - context)
        last = min(total, (k + 1) * chunk + context)
        start, stop = first * frame_shift, min(num_samples, last * frame_shift)
        final = k == count - 1
        windows.append(Window(start, stop, k * chunk - first, None if final else chunk))
    return windows


def encode_chunks(
    encoder,
    read: Callable[[int, int], torch.Tensor],
    num_samples: int,
    chunking: Chunking,
    sample_rate: int,
    device: torch.device | str = "cpu",
    batch_seconds: float = 160.0,
) -> Iterator[tuple[torch.Tensor, ...]]:
    """Encode one recording in windows; yields, in order, the kept frames of each window as a
    tuple of L+1 hidden states [t, D] (on ``device``).

    Args:
        read: ``read(start, stop)`` -> FloatTensor [stop - start], the recording's samples.
        batch_seconds: audio per encoder call (several windows go through at once).
    """
    shift = int(encoder.frame_shift)
    chunk, context = chunking.frames(shift, sample_rate)
    windows = plan_windows(num_samples, shift, chunk, context)
    per_call = max(1, int(batch_seconds * sample_rate // ((chunk + 2 * context) * shift)))
    for i in range(0, len(windows), per_call):
        group = windows[i : i + per_call]
        wavs = [read(w.start, w.stop) for w in group]
        lens = torch.tensor([x.shape[0] for x in wavs])
        wav = torch.zeros(len(wavs), int(lens.max()))
        for j, x in enumerate(wavs):
            wav[j, : x.shape[0]] = x
        out = encoder(wav.to(device), lens.to(device))
        for j, w in enumerate(group):
            n = int(out.lengths[j])
            stop = n if w.keep is None else min(n, w.keep_from + w.keep)
            yield tuple(h[j, w.keep_from : stop] for h in out.hidden_states)


def forward(
    encoder,
    wav: torch.Tensor,
    wav_lens: torch.Tensor,
    chunking: Chunking | None,
    sample_rate: int,
) -> EncoderOutput:
    """``encoder(wav [B, S], wav_lens [B])``, with the recordings that :meth:`Chunking.applies`
    to encoded in windows and stitched (the others in one call, as a whole)."""
    lens = [int(n) for n in wav_lens]
    long = [chunking is not None and chunking.applies(n / sample_rate) for n in lens]
    if not any(long):
        return encoder(wav, wav_lens)
    per_item: dict[int, tuple[torch.Tensor, ...]] = {}
    short = [i for i, is_long in enumerate(long) if not is_long]
    if short:
        s = max(lens[i] for i in short)
        out = encoder(wav[short, :s], wav_lens[short])
        for j, i in enumerate(short):
            per_item[i] = tuple(h[j, : int(out.lengths[j])] for h in out.hidden_states)
    for i, is_long in enumerate(long):
        if is_long:
            parts = list(
                encode_chunks(
                    encoder,
                    lambda a, b, row=wav[i]: row[a:b],
                    lens[i],
                    chunking,
                    sample_rate,
                    wav.device,
                )
            )
            per_item[i] = tuple(torch.cat(layer) for layer in zip(*parts, strict=True))
    t = max(states[0].shape[0] for states in per_item.values())
    layers = len(per_item[0])
    hidden = []
    for n in range(layers):
        first = per_item[0][n]
        h = first.new_zeros(len(lens), t, first.shape[-1])
        for i, states in per_item.items():
            h[i, : states[n].shape[0]] = states[n]
        hidden.append(h)
    lengths = torch.tensor([per_item[i][0].shape[0] for i in range(len(lens))], device=wav.device)
    return EncoderOutput(tuple(hidden), lengths)
