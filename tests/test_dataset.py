"""The record dataset: training crops change every epoch and match their targets; evaluation
batches come shortest first from the bucket sampler, indices stay those of the records."""

import numpy as np
import torch

from nestbench.dataset import RecordDataset, collate
from nestbench.sampler import BucketBatchSampler


class _Task:
    def target(self, item, start, duration):
        return (item["label"], round(start, 4), duration)

    def collate_targets(self, targets):
        return targets


def _items(tmp_path):
    import soundfile as sf

    items = []
    for i, dur in enumerate([2.0, 0.5, 1.0]):
        path = tmp_path / f"{i}.wav"
        sf.write(path, np.random.default_rng(i).standard_normal(int(16000 * dur)) * 0.1, 16000)
        items.append({"audio_filepath": str(path), "duration": dur, "label": i})
    return items


def test_crops_change_with_the_epoch_and_targets_follow(tmp_path):
    items = _items(tmp_path)
    ds = RecordDataset(items, _Task(), None, 160, crop_seconds=0.25, train=True, seed=0)
    first = ds[0]
    assert first["wav"].shape == (4000,)
    label, start, duration = first["target"]
    assert label == 0 and duration == 0.25 and 0 <= start <= 1.75
    starts = set()
    for epoch in range(5):
        ds.set_epoch(epoch)
        starts.add(ds[0]["target"][1])
    assert len(starts) > 1
    ds.set_epoch(0)
    assert ds[0]["target"] == first["target"]  # reproducible for a seed and epoch


def test_evaluation_order_and_padding(tmp_path):
    items = _items(tmp_path)
    ds = RecordDataset(items, _Task(), None, 160)
    assert ds.durations() == [2.0, 0.5, 1.0]
    assert RecordDataset(items, _Task(), None, 160, 0.75, train=True).durations() == [
        0.75,
        0.5,
        0.75,
    ]
    (order,) = list(BucketBatchSampler(ds.durations(), batch_size=3, shuffle=False))
    assert order == [1, 2, 0]
    batch = collate([ds[i] for i in order])
    assert batch["index"].tolist() == [1, 2, 0]
    assert batch["wav_lens"].tolist() == [8000, 16000, 32000]
    assert torch.all(batch["wav"][0, 8000:] == 0) and "target" not in batch
