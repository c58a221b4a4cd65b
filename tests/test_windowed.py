"""Long recordings in windows: the plan covers every frame once, a frame-local encoder gives the
same frames as a whole pass, no encoder call sees more than one window, the feature cache
streams long entries, and AS-norm scores in blocks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from nestbench.audio import AudioError, segment_reader
from nestbench.cache import EntryWriter, FeatureCache, _read_entry
from nestbench.encoders.windowed import Chunking, forward, plan_windows
from nestbench.metrics.sv import as_norm
from tests.toy_encoders import FramesEncoder, LongestInputEncoder


@pytest.mark.parametrize("samples", [160 * 1000, 160 * 1000 + 77, 160 * 95, 160 * 5])
def test_windows_keep_every_frame_once(samples):
    windows = plan_windows(samples, 160, chunk=40, context=7)
    kept, frame = [], 0
    for w in windows:
        assert w.start % 160 == 0 and w.stop - w.start <= (40 + 14) * 160
        first = w.start // 160 + w.keep_from
        assert first == frame  # the kept frames continue where the last window's ended
        n = w.keep if w.keep is not None else -(-(w.stop - w.start) // 160) - w.keep_from
        kept.append(n)
        frame += n
    assert frame == -(-samples // 160)
    assert windows[-1].stop == samples and windows[0].start == 0


def test_a_frame_local_encoder_gives_the_whole_pass_frames():
    enc = FramesEncoder().eval()
    torch.manual_seed(0)
    lens = torch.tensor([160 * 2000 + 33, 160 * 300, 160 * 1234])
    wav = torch.randn(3, int(lens.max()))
    with torch.no_grad():
        whole = enc(wav, lens)
        # 0.4 s chunks, 0.08 s context: the 20 s and 12 s recordings go in windows, 3 s whole
        win = forward(enc, wav, lens, Chunking(0.4, 0.08), 16000)
    assert win.lengths.tolist() == whole.lengths.tolist()
    for a, b in zip(whole.hidden_states, win.hidden_states, strict=True):
        for i, n in enumerate(whole.lengths.tolist()):
            torch.testing.assert_close(b[i, :n], a[i, :n], rtol=0, atol=1e-6)


def test_no_encoder_call_sees_more_than_a_window(tmp_path):
    path = tmp_path / "long.wav"
    sf.write(path, 0.1 * np.random.default_rng(0).standard_normal(16000 * 95), 16000)
    item = {"audio_filepath": str(path), "duration": 95.0}
    enc = LongestInputEncoder().eval()
    LongestInputEncoder.longest = 0
    cache = FeatureCache(tmp_path / "c", enc.identity(), chunking=Chunking(10.0, 2.0))
    assert cache.chunked(item) and cache.build([item], enc, progress=False) == 1
    assert LongestInputEncoder.longest <= 14 * 16000  # 10 s + 2 x 2 s context, never 95 s
    feats = cache.load(item)
    assert feats.shape == (3, 95 * 100, 8)  # all frames of all layers, as a whole pass gives
    wav = torch.from_numpy(sf.read(path, dtype="float32")[0])[None]
    with torch.no_grad():
        whole = enc(wav, torch.tensor([wav.shape[1]]))
    np.testing.assert_allclose(
        feats[2], whole.hidden_states[2][0].numpy().astype(np.float16), atol=2e-3
    )
    # the chunking is in the key of long entries only: a short one keeps its entry
    short = {"audio_filepath": str(path), "offset": 0.0, "duration": 5.0}
    other = FeatureCache(tmp_path / "c", enc.identity(), chunking=Chunking(20.0, 2.0))
    assert other.entry_path(short) == cache.entry_path(short)
    assert other.entry_path(item) != cache.entry_path(item)


def test_streamed_entry_matches_a_whole_write_and_an_error_leaves_nothing(tmp_path):
    x = np.random.default_rng(0).standard_normal((3, 50, 4)).astype(np.float32)
    with EntryWriter(tmp_path / "a.feat") as w:
        for i in range(0, 50, 7):
            w.append(x[:, i : i + 7])
    np.testing.assert_array_equal(
        _read_entry(tmp_path / "a.feat", verify=True), x.astype(np.float16)
    )
    with pytest.raises(RuntimeError), EntryWriter(tmp_path / "b.feat") as w:
        w.append(x[:, :10])
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.feat"]


def test_segment_reader_names_a_truncated_file(tmp_path):
    path = tmp_path / "cut.wav"
    sf.write(path, np.zeros(16000 * 60, dtype=np.float32), 16000, subtype="PCM_16")
    read, n = segment_reader({"audio_filepath": str(path), "duration": 60.0})
    assert n == 16000 * 60 and read(16000, 32000).shape == (16000,)
    with pytest.raises(AudioError, match=r"cut\.wav: the manifest says 90\.000 s"):
        segment_reader({"audio_filepath": str(path), "duration": 90.0})


def test_as_norm_in_blocks_equals_one_block():
    rng = np.random.default_rng(0)
    e, t, cohort = rng.standard_normal((3, 500, 8))
    scores = rng.standard_normal(500)
    whole = as_norm(scores, e, t, cohort, top_n=20, block_elements=10**9)
    blocks = as_norm(scores, e, t, cohort, top_n=20, block_elements=1000)  # 2 rows per block
    np.testing.assert_allclose(blocks, whole, rtol=1e-12)


@pytest.mark.parametrize("cache", ["true", "false"])
def test_a_run_with_a_long_training_recording_encodes_it_in_windows(tmp_path, cache):
    import json

    from nestbench.runner import run
    from tests.sv_helpers import SMALL_SV, make_sv_folder

    data = make_sv_folder(tmp_path / "sv")
    long = data / "wav" / "train" / "long.wav"
    sf.write(long, 0.1 * np.random.default_rng(1).standard_normal(16000 * 40), 16000)
    with open(data / "train.json", "a") as f:
        f.write(json.dumps({"audio_filepath": str(long), "duration": 40.0, "label": "spk00"}))
    LongestInputEncoder.longest = 0
    _, result = run(
        "sv",
        [*SMALL_SV, "trainer.max_epochs=1", f"cache.root={tmp_path / 'c'}",
         f"cache.enabled={cache}", "encoder.chunk_seconds=4", "encoder.context_seconds=1",
         "sv.crop_seconds=null"],
        encoder="tests.toy_encoders:LongestInputEncoder",
        data=str(data),
        out=str(tmp_path / "runs"),
    )  # fmt: skip
    assert 0 < LongestInputEncoder.longest <= 6 * 16000  # 4 s + 2 x 1 s, never the 40 s
    assert result.metrics["test"]["eer"]["value"] >= 0


def test_sv_cuts_a_long_training_recording_into_windows_of_its_speaker(tmp_path):
    from nestbench.config import resolve_run_config
    from nestbench.task import get_task
    from tests.sv_helpers import make_sv_folder

    data = make_sv_folder(tmp_path / "sv")
    long = data / "wav" / "train" / "long.wav"
    sf.write(long, np.zeros(16000 * 95, dtype=np.float32), 16000)
    with open(data / "train.json", "a") as f:
        f.write(f'{{"audio_filepath": "{long}", "duration": 95.0, "label": "spk03"}}\n')
    task = get_task("sv")(resolve_run_config("sv", ["sv.train_window_seconds=30"]))
    splits = task.load(data)
    train = task.examples("train", splits["train"])
    windows = [ex for ex in train if ex["audio_filepath"] == str(long)]
    assert [(w["offset"], w["duration"]) for w in windows] == [
        (0.0, 30.0), (30.0, 30.0), (60.0, 30.0), (65.0, 30.0)
    ]  # fmt: skip
    assert {w["label"] for w in windows} == {"spk03"}
    assert len(train) == len(splits["train"]) + 3  # the short records stay whole
    assert task.examples("test", splits["test"])[len(splits["test"]) :] == train  # the cohort
