"""The feature cache: computed once, reused, keyed by encoder and audio, damage detected."""

import logging
import os

import numpy as np
import soundfile as sf
import torch

from nestbench.cache import FeatureCache
from nestbench.featurizer import Featurizer
from tests.toy_encoders import FramesEncoder


def _items(tmp_path, n=5):
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        path = tmp_path / f"u{i}.wav"
        dur = 0.5 + 0.25 * i
        sf.write(path, 0.1 * rng.standard_normal(int(16000 * dur)).astype(np.float32), 16000)
        items.append({"audio_filepath": str(path), "duration": dur})
    return items


def test_build_once_then_reuse(tmp_path):
    items, enc = _items(tmp_path), FramesEncoder()
    cache = FeatureCache(tmp_path / "cache", enc.identity())
    assert cache.build(items, enc, progress=False) == 5
    assert enc.calls == 5  # once per utterance
    assert cache.build(items, enc, progress=False) == 0 and enc.calls == 5
    again = FeatureCache(tmp_path / "cache", enc.identity())  # a new process, same encoder
    assert again.build(items, enc, progress=False) == 0 and enc.calls == 5
    feats = again.load(items[2])
    assert feats.dtype == np.float16 and feats.shape == (enc.num_layers + 1, 100, enc.hidden_size)
    # The cached values are the encoder's own outputs (within float16 precision).
    from nestbench.audio import load_audio

    wav = load_audio(items[2]["audio_filepath"])[None]
    out = enc(wav, torch.tensor([wav.shape[1]]))
    ref = torch.stack(out.hidden_states, 1)[0].detach().numpy()
    np.testing.assert_allclose(np.asarray(feats, dtype=np.float32), ref, atol=2e-3, rtol=2e-3)


def test_changed_encoder_or_layers_get_new_entries(tmp_path):
    items, enc = _items(tmp_path, 2), FramesEncoder()
    root = tmp_path / "cache"
    FeatureCache(root, enc.identity()).build(items, enc, progress=False)
    with torch.no_grad():
        enc.proj.weight.add_(0.01)
    changed = FeatureCache(root, enc.identity())
    assert changed.build(items, enc, progress=False) == 2
    subset = FeatureCache(root, enc.identity(), layers=[0, 2])
    assert subset.key != changed.key
    subset.build(items, enc, progress=False)
    assert subset.load(items[0]).shape[0] == 2


def test_edited_audio_is_recomputed(tmp_path):
    items, enc = _items(tmp_path, 2), FramesEncoder()
    cache = FeatureCache(tmp_path / "cache", enc.identity())
    cache.build(items, enc, progress=False)
    path = items[0]["audio_filepath"]
    sf.write(path, np.zeros(8000, dtype=np.float32), 16000)
    os.utime(path, ns=(1, 1))  # a different mtime even on coarse file systems
    assert cache.build(items, enc, progress=False) == 1


def test_damaged_entries_are_detected_and_rebuilt(tmp_path, caplog):
    items, enc = _items(tmp_path, 3), FramesEncoder()
    cache = FeatureCache(tmp_path / "cache", enc.identity())
    cache.build(items, enc, progress=False)
    good = np.asarray(cache.load(items[1])).copy()
    truncated = cache.entry_path(items[0])
    truncated.write_bytes(truncated.read_bytes()[:-10])
    flipped = cache.entry_path(items[1])
    raw = bytearray(flipped.read_bytes())
    raw[-3] ^= 0xFF
    flipped.write_bytes(bytes(raw))
    fresh = FeatureCache(tmp_path / "cache", enc.identity())
    with caplog.at_level(logging.WARNING):
        assert fresh.build(items, enc, progress=False) == 2
    assert "damaged" in caplog.text and "size" in caplog.text and "checksum" in caplog.text
    np.testing.assert_array_equal(np.asarray(fresh.load(items[1])), good)
    assert not list(cache.dir.rglob(".tmp-*"))


def test_featurizer_weighted_sum_and_single_layer():
    h = torch.randn(3, 2, 4, 5)
    f = Featurizer(3, 5)
    torch.testing.assert_close(f(h), h.mean(0))  # zero logits: uniform softmax
    torch.testing.assert_close(f.weights(), torch.full((3,), 1 / 3))
    one = Featurizer(3, 5, layer=1)
    torch.testing.assert_close(one(tuple(h)), h[1])
    assert list(one.parameters()) == []
    normed = Featurizer(3, 5, layer_norm=True)(h)
    torch.testing.assert_close(normed, torch.nn.functional.layer_norm(h, (5,)).mean(0))


def test_entries_are_held_in_memory_up_to_the_budget(tmp_path):
    items, enc = _items(tmp_path, 3), FramesEncoder()
    FeatureCache(tmp_path / "cache", enc.identity()).build(items, enc, progress=False)
    disk = [np.asarray(FeatureCache(tmp_path / "cache", enc.identity()).load(it)) for it in items]
    two = disk[0].nbytes + disk[1].nbytes  # room for the first two entries, not the third
    cache = FeatureCache(tmp_path / "cache", enc.identity(), memory_mb=two / 2**20)
    assert cache.missing(items) == [] and cache.held_bytes == 0  # a check holds nothing
    first = [cache.load(it) for it in items]
    assert cache.held_bytes == two
    assert not isinstance(first[0], np.memmap) and isinstance(first[2], np.memmap)
    assert not first[0].flags.writeable
    for got, ref in zip(first, disk, strict=True):
        np.testing.assert_array_equal(got, ref)
    for it in items:  # later epochs: the held entries need no file, the third still does
        cache.entry_path(it).rename(cache.entry_path(it).with_suffix(".away"))
    assert cache.load(items[0]) is first[0] and cache.load(items[2]) is None
    # A new fill forgets what is held, so an edited or removed file is seen again.
    assert cache.build(items, enc, progress=False) == 3 and cache.held_bytes == 0
    unheld = FeatureCache(tmp_path / "cache", enc.identity())  # memory_mb=0: memory-mapped only
    assert isinstance(unheld.load(items[0]), np.memmap) and unheld.held_bytes == 0
