"""One data path for every task and encoder: examples -> cached features or audio -> batches.

In frozen mode with the cache on, an example gives its cached hidden states [N, T, D]; otherwise
it gives its audio [S] and the model runs the encoder. Training crops are random windows of
``crop_seconds`` (in frames for features, samples for audio) and the task's target is computed for
the same window. Batches come from :class:`nestbench.sampler.BucketBatchSampler` over
:meth:`RecordDataset.durations`, by count and/or audio seconds.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from nestbench.audio import load_item
from nestbench.cache import FeatureCache


class RecordDataset(Dataset):
    """Records of one split as model inputs.

    Args:
        items: manifest records (absolute ``audio_filepath``).
        task: the Task (gives targets when ``train``).
        cache: a filled FeatureCache, or None to read audio.
        frame_shift: the encoder's samples per frame (converts crops to frames).
        crop_seconds: random training window length (None: whole records).
        train: whether to crop and return targets.
        seed: base of the crop random numbers (combined with the epoch and index).

    ``index`` in each output is the record's position in ``items``.
    """

    def __init__(
        self,
        items,
        task,
        cache: FeatureCache | None,
        frame_shift: int,
        crop_seconds: float | None = None,
        train: bool = False,
        seed: int = 0,
        sample_rate: int = 16000,
    ):
        self.items, self.task, self.cache = items, task, cache
        self.frame_shift, self.crop_seconds, self.train = frame_shift, crop_seconds, train
        self.seed, self.epoch, self.sample_rate = seed, 0, sample_rate

    def __len__(self) -> int:
        return len(self.items)

    def durations(self) -> list[float]:
        """Seconds of audio each item gives (training crops cap it), for duration batching."""
        durs = [float(it.get("duration") or 0.0) for it in self.items]
        if self.train and self.crop_seconds is not None:
            return [min(d, self.crop_seconds) for d in durs]
        return durs

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _window(self, total: int, step_seconds: float, index: int) -> tuple[int, int]:
        """(start, length) in units of ``step_seconds`` for a training crop of ``total`` units."""
        if not self.train or self.crop_seconds is None:
            return 0, total
        length = max(1, int(round(self.crop_seconds / step_seconds)))
        if total <= length:
            return 0, total
        rng = np.random.default_rng([self.seed, self.epoch, index])
        return int(rng.integers(0, total - length + 1)), length

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        out = {"index": index}
        if self.cache is not None:
            feats = self.cache.load(item)
            if feats is None:
                raise RuntimeError(f"feature cache has no entry for {item['audio_filepath']}")
            step = self.frame_shift / self.sample_rate
            start, n = self._window(feats.shape[1], step, index)
            out["feats"] = torch.from_numpy(
                np.asarray(feats[:, start : start + n], dtype=np.float32)
            )
        else:
            wav = load_item(item, self.sample_rate)
            step = 1.0 / self.sample_rate
            start, n = self._window(wav.shape[0], step, index)
            out["wav"] = wav[start : start + n]
        if self.train:
            cropped = self.crop_seconds is not None
            out["target"] = self.task.target(item, start * step, n * step if cropped else None)
        return out


def collate(batch: list[dict], task=None) -> dict:
    """Pad a list of dataset outputs.

    Returns a dict with ``index`` [B] and either ``feats`` [B, N, T, D] + ``lengths`` [B] (frames)
    or ``wav`` [B, S] + ``wav_lens`` [B] (samples), plus ``target`` collated by the task.
    """
    out = {"index": torch.tensor([b["index"] for b in batch])}
    if "feats" in batch[0]:
        lengths = torch.tensor([b["feats"].shape[1] for b in batch])
        if len(batch) == 1:  # nothing to pad: no copy (a long recording's batch of one)
            feats = batch[0]["feats"].unsqueeze(0)
        else:
            n, _, d = batch[0]["feats"].shape
            feats = torch.zeros(len(batch), n, int(lengths.max()), d)
            for i, b in enumerate(batch):
                feats[i, :, : b["feats"].shape[1]] = b["feats"]
        out["feats"], out["lengths"] = feats, lengths
    else:
        lens = torch.tensor([b["wav"].shape[0] for b in batch])
        wav = torch.zeros(len(batch), int(lens.max()))
        for i, b in enumerate(batch):
            wav[i, : b["wav"].shape[0]] = b["wav"]
        out["wav"], out["wav_lens"] = wav, lens
    if "target" in batch[0]:
        out["target"] = task.collate_targets([b["target"] for b in batch])
    return out
