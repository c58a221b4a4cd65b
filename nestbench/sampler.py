"""Duration-bucketed batches: one implementation for task runs, the feature cache and pretraining.

A batch is limited by a count (``batch_size``), by padded audio seconds (``batch_seconds``: the
longest member's duration times the number of members, which is what a padded batch costs), or
by both. :func:`duration_batches` cuts a list of durations into such batches;
:class:`BucketBatchSampler` is the torch batch sampler built on it (per-epoch shuffling from a
seed, similar lengths together, batches dealt to DDP ranks).
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence

import torch


def duration_batches(
    durations: Sequence[float],
    indices: Sequence[int] | None = None,
    batch_size: int | None = None,
    batch_seconds: float | None = None,
    min_size: int = 1,
) -> list[list[int]]:
    """Cut ``indices`` (default: all, in the order given) into consecutive batches.

    A batch closes when adding the next index would exceed ``batch_size`` members or
    ``batch_seconds`` of padded audio (``max(duration) * members``), but never with fewer than
    ``min_size`` members (training sets 2: BatchNorm cannot train on a batch of one), so an item
    longer than ``batch_seconds`` gets a batch of ``min_size``. Sort ``indices`` by duration
    first for little padding.
    """
    if batch_size is None and batch_seconds is None:
        raise ValueError("duration_batches needs batch_size or batch_seconds")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if batch_seconds is not None and batch_seconds <= 0:
        raise ValueError(f"batch_seconds must be > 0, got {batch_seconds}")
    order = range(len(durations)) if indices is None else indices
    batches: list[list[int]] = []
    cur: list[int] = []
    longest = 0.0
    for i in order:
        d = float(durations[i])
        full = batch_size is not None and len(cur) >= batch_size
        too_long = batch_seconds is not None and max(longest, d) * (len(cur) + 1) > batch_seconds
        if len(cur) >= min_size and (full or too_long):
            batches.append(cur)
            cur, longest = [], 0.0
        cur.append(i)
        longest = max(longest, d)
    if cur:
        batches.append(cur)
    return batches


class BucketBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Length-bucketed batches of indices, split across DDP ranks.

    Each epoch (``set_epoch``, called by :class:`nestbench.training.EpochSetter`; Lightning
    itself does not reach a batch sampler): shuffle with ``seed`` and the epoch, cut
    into pools of ``bucket_batches * batch_size`` utterances (``bucket_batches * 16`` with a
    seconds limit only), sort each pool by duration, cut it into batches
    (:func:`duration_batches`), shuffle the batches. ``drop_last`` drops the last batch of each
    pool when it is not full (room for another member under both limits; never a pool's only
    batch), so no training batch is a lone leftover. Rank r of
    W takes batches r, r+W, ... of the first ``W * floor(n / W)`` (``drop_last``) or of all
    batches repeated up to a multiple of W (every rank gets as many; evaluation sees each index at
    least once). ``shuffle=False``: batches in duration order, no randomness. ``fixed=True``
    ignores ``set_epoch`` (the same order every time).
    """

    def __init__(
        self,
        durations: Sequence[float],
        batch_size: int | None = None,
        seed: int = 0,
        shuffle: bool = True,
        drop_last: bool = True,
        bucket_batches: int = 50,
        rank: int = 0,
        world_size: int = 1,
        fixed: bool = False,
        batch_seconds: float | None = None,
        min_size: int = 1,
    ):
        if batch_size is None and batch_seconds is None:
            raise ValueError("BucketBatchSampler needs batch_size or batch_seconds")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.durations = [float(d) for d in durations]
        self.batch_size = batch_size
        self.batch_seconds = batch_seconds
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.bucket_batches = max(1, bucket_batches)
        self.rank = rank
        self.world_size = max(1, world_size)
        self.fixed = fixed
        self.min_size = max(1, min(min_size, batch_size or min_size))
        self.epoch = 0
        self.consumed = 0  # batches of this epoch trained on (advanced by ConsumedBatches)
        self._skip = 0  # batches to skip at the next __iter__ (a restored state)

    def set_epoch(self, epoch: int) -> None:
        if not self.fixed:
            self.epoch = epoch

    def _cut(self, idx: list[int]) -> list[list[int]]:
        idx = sorted(idx, key=lambda i: self.durations[i])
        return duration_batches(
            self.durations, idx, self.batch_size, self.batch_seconds, self.min_size
        )

    def _underfull(self, batch: list[int]) -> bool:
        """Whether one more member as long as the longest would still fit the limits."""
        if self.batch_size is None or len(batch) >= self.batch_size:
            return False
        longest = max(self.durations[i] for i in batch)
        return self.batch_seconds is None or longest * (len(batch) + 1) <= self.batch_seconds

    def _all_batches(self) -> list[list[int]]:
        idx = list(range(len(self.durations)))
        if not self.shuffle:
            return self._cut(idx)
        rng = random.Random(self.seed * 100003 + self.epoch)
        rng.shuffle(idx)
        pool = self.bucket_batches * (self.batch_size or 16)
        batches = []
        for p in range(0, len(idx), pool):
            cut = self._cut(idx[p : p + pool])
            if self.drop_last and len(cut) > 1 and self._underfull(cut[-1]):
                cut = cut[:-1]
            batches += cut
        rng.shuffle(batches)
        return batches

    def _rank_batches(self) -> list[list[int]]:
        batches = self._all_batches()
        w = self.world_size
        if w > 1 and batches:
            if self.drop_last and len(batches) >= w:
                batches = batches[: len(batches) // w * w]
            else:
                while len(batches) % w:
                    batches = batches + batches[: w - len(batches) % w]
        return batches[self.rank :: w]

    def __iter__(self) -> Iterator[list[int]]:
        skip, self._skip = self._skip, 0
        self.consumed = skip
        return iter(self._rank_batches()[skip:])

    def state_dict(self) -> dict[str, int]:
        """Where training stands in the batch order: the epoch and how many of its batches were
        consumed (what a checkpoint must hold for an exact resume)."""
        return {"epoch": int(self.epoch), "consumed": int(self.consumed)}

    def load_state_dict(self, state: dict) -> None:
        """Continue at ``state``: the next iteration yields the epoch's batches after the
        consumed ones (``__len__`` stays the whole epoch, as the trainer counts it)."""
        self.epoch = int(state["epoch"])
        self._skip = int(state["consumed"])

    def __len__(self) -> int:
        return len(self._rank_batches())


class ResumableLoader(torch.utils.data.DataLoader):
    """A DataLoader whose place in the epoch is saved in Lightning checkpoints and restored on
    resume (Lightning calls ``state_dict``/``load_state_dict`` of stateful loaders), so a resumed
    run sees the batches the uninterrupted run would have. Needs a :class:`BucketBatchSampler`
    as ``batch_sampler`` and :class:`ConsumedBatches` among the trainer's callbacks."""

    def state_dict(self) -> dict[str, int]:
        return self.batch_sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.batch_sampler.load_state_dict(state)
