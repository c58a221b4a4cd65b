"""The diarization task: DER through nestbench's RTTM writer/reader against pyannote's golden
case, slot alignment when stitching windows, the PIT and hybrid losses, post-processing, bad
input, and a trained head beating an untrained one on toy sessions."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from nestbench.tasks.diar.losses import arrival_order, diarization_loss
from nestbench.tasks.diar.postprocess import PostProcessing, clean_turns, hysteresis, to_segments
from nestbench.tasks.diar.stitch import stitch_sessions

from nestbench.data.rttm import Segment, UEMRegion, read_rttm, write_rttm
from nestbench.metrics.diar import Session, score_sessions
from nestbench.task import TaskError
from nestbench.windows import cut_windows, num_frames
from tests.toy_tasks import run_toy

SR = 16000
ENCODER = "tests.toy_encoders:SpectralEncoder"
#: a tone chord per speaker: what the toy encoder's spectra separate
VOICES = ((300.0, 650.0), (900.0, 1400.0), (1900.0, 2500.0), (3100.0, 3700.0))


def make_diar_folder(root: Path, per_split: dict | None = None, seconds: float = 16.0,
                     seed: int = 0) -> Path:  # fmt: skip
    """Sessions of 2-3 of the 4 toy voices taking turns of 0.6-2 s (gaps up to 0.5 s, some
    overlap), a noise floor; ``<root>/diar/<split>_manifest.json`` with RTTM (one per session)
    and, for the first session of each split, a UEM."""
    rng = np.random.default_rng(seed)
    per_split = per_split or {"train": 12, "dev": 3, "test": 4}
    base = root / "diar"
    for split, n in per_split.items():
        lines = []
        for k in range(n):
            uri = f"{split}-s{k}"
            x = 0.005 * rng.standard_normal(int(SR * seconds))
            voices = rng.choice(4, size=int(rng.integers(2, 4)), replace=False)
            turns, t = [], float(rng.uniform(0, 0.5))
            while t < seconds - 0.6:
                v = int(rng.choice(voices))
                dur = min(float(rng.uniform(0.6, 2.0)), seconds - t)
                a, b = int(t * SR), int((t + dur) * SR)
                tt = np.arange(b - a) / SR
                x[a:b] += sum(0.2 * np.sin(2 * np.pi * f * tt + rng.uniform(0, 6))
                              for f in VOICES[v])  # fmt: skip
                turns.append(Segment(uri, round(t, 3), round(dur, 3), f"v{v}"))
                t += dur + float(rng.uniform(-0.3, 0.5))  # some overlap
            wav = base / split / "wav" / f"{uri}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            sf.write(wav, x.astype(np.float32), SR, subtype="PCM_16")
            rttm = base / split / "rttm" / f"{uri}.rttm"
            rttm.parent.mkdir(parents=True, exist_ok=True)
            write_rttm(rttm, turns)
            rec = {"audio_filepath": str(wav.relative_to(base)), "offset": 0.0,
                   "duration": seconds, "rttm_filepath": str(rttm.relative_to(base)),
                   "num_speakers": len({s.speaker for s in turns})}  # fmt: skip
            if k == 0:
                uem = base / split / f"{uri}.uem"
                uem.write_text(f"{uri} 1 0.000 {seconds - 1:.3f}\n")
                rec["uem_filepath"] = str(uem.relative_to(base))
            lines.append(json.dumps(rec) + "\n")
        (base / f"{split}_manifest.json").write_text("".join(lines))
    return root


# -- metrics ---------------------------------------------------------------------------------
def test_pyannote_golden_case_through_our_rttm_files(tmp_path):
    """METRICS.md: ref A[0,10] B[12,20] A[24,27] C[30,40]; hyp a[2,13] d[13,14] b[14,20]
    c[22,38] d[38,40] -> DER 0.516129 (confusion 7, false alarm 7, miss 2, total 31)."""
    ref = [("A", 0, 10), ("B", 12, 20), ("A", 24, 27), ("C", 30, 40)]
    hyp = [("a", 2, 13), ("d", 13, 14), ("b", 14, 20), ("c", 22, 38), ("d", 38, 40)]
    for name, turns in (("ref", ref), ("hyp", hyp)):
        write_rttm(tmp_path / f"{name}.rttm", [Segment("f", a, b - a, s) for s, a, b in turns])
    session = Session("f", read_rttm(tmp_path / "ref.rttm"), read_rttm(tmp_path / "hyp.rttm"),
                      [UEMRegion("f", 0.0, 40.0)], 40.0)  # fmt: skip
    metrics, table = score_sessions([session], bootstrap=0)
    assert metrics["der"].value == pytest.approx(100 * 16 / 31, abs=1e-4)
    assert metrics["missed"] == pytest.approx(100 * 2 / 31)
    assert metrics["false_alarm"] == pytest.approx(100 * 7 / 31)
    assert metrics["confusion"] == pytest.approx(100 * 7 / 31)
    assert table[0]["speech_seconds"] == pytest.approx(31.0)
    # the md-eval collar (+-0.25 s, pyannote 0.5) forgives errors at boundaries: never more
    assert metrics["der_collar25"].value < metrics["der"].value
    from pyannote.metrics.diarization import JaccardErrorRate

    from nestbench.metrics.diar import annotation, timeline

    ref_ann, hyp_ann = annotation(session.reference, "f"), annotation(session.hypothesis, "f")
    jer = JaccardErrorRate()(ref_ann, hyp_ann, uem=timeline(session.uem, "f", 40.0))
    assert metrics["jer"].value == pytest.approx(100 * jer)


def test_der_interval_pools_sessions_and_respects_the_uem():
    ref = [Segment("a", 0.0, 10.0, "x")]
    good = Session("a", ref, [Segment("a", 0.0, 10.0, "y")], [], 10.0)
    half = Session("b", [Segment("b", 0.0, 10.0, "x")], [Segment("b", 0.0, 5.0, "y")], [], 10.0)
    metrics, table = score_sessions([good, half], bootstrap=200)
    assert metrics["der"].value == pytest.approx(25.0)  # 5 s missed of 20 s
    lo, hi = metrics["der"].ci95
    assert lo <= 25.0 <= hi and [r["der"] for r in table] == pytest.approx([0.0, 50.0])
    # outside the UEM nothing counts: scoring only 0-5 s makes the half session perfect
    scored = Session("b", half.reference, half.hypothesis, [UEMRegion("b", 0.0, 5.0)], 10.0)
    assert score_sessions([scored], bootstrap=0)[0]["der"].value == pytest.approx(0.0)


# -- losses ----------------------------------------------------------------------------------
def _targets(b=3, t=40, s=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(b, t, s, generator=g) > 0.6).float()
    y[:, :, 3] = 0  # an absent speaker
    return y, torch.randn(b, t, s, generator=g), torch.tensor([t, t - 7, t - 15])


def test_pit_loss_is_invariant_to_the_speaker_order_of_the_targets():
    y, x, lengths = _targets()
    base = diarization_loss(x, y, lengths, "pit")
    for perm in ([1, 0, 2, 3], [3, 2, 1, 0], [2, 3, 0, 1]):
        assert diarization_loss(x, y[..., perm], lengths, "pit") == pytest.approx(float(base))
    # and it is the best assignment: the mean BCE against any one fixed order is no lower
    mask = (torch.arange(y.shape[1])[None] < lengths[:, None]).float()[..., None]
    for perm in itertools.permutations(range(4)):
        bce = F.binary_cross_entropy_with_logits(x, y[..., list(perm)], reduction="none")
        assert float(base) <= float((bce * mask).sum() / (mask.sum() * 4)) + 1e-6


def test_hybrid_loss_equals_its_definition_on_a_hand_case():
    """0.5 x BCE against arrival-sorted targets + 0.5 x the best of the 4! permutations, each
    normalised by valid frames x speakers (padding frames never count)."""
    y, x, lengths = _targets()
    mask = (torch.arange(y.shape[1])[None] < lengths[:, None]).float()[..., None]
    n = mask.sum() * y.shape[2]

    def bce(target):
        return (F.binary_cross_entropy_with_logits(x, target, reduction="none") * mask).sum((1, 2))

    pit = torch.stack([bce(y[..., list(p)]) for p in itertools.permutations(range(4))]).amin(0)
    # arrival order by hand: first active valid frame of each speaker, absent ones last
    sorted_y = torch.zeros_like(y)
    for b in range(y.shape[0]):
        valid = y[b, : lengths[b]]
        first = [int(valid[:, k].nonzero()[0]) if valid[:, k].any() else 10**6 for k in range(4)]
        order = sorted(range(4), key=lambda k: (first[k], k))
        sorted_y[b] = y[b][:, order]
    assert torch.equal(arrival_order(y, mask[..., 0]), sorted_y)
    expected = 0.5 * bce(sorted_y).sum() / n + 0.5 * pit.sum() / n
    assert diarization_loss(x, y, lengths, "hybrid") == pytest.approx(float(expected), rel=1e-5)
    assert diarization_loss(x, y, lengths, "pit") == pytest.approx(float(pit.sum() / n), rel=1e-5)


# -- stitching and post-processing ------------------------------------------------------------
def test_stitching_aligns_speakers_of_permuted_windows():
    """Per-window outputs handed back with their slots shuffled stitch to the same activities
    as the unshuffled ones (up to one permutation of the whole session)."""
    rng = np.random.default_rng(0)
    fr, duration = 10.0, 60.0
    t = num_frames(duration, fr)
    truth = np.zeros((t, 3))
    for k in range(3):  # turns of 2-6 s, each speaker somewhere in every 20 s
        for start in range(k * 20, t, 60):
            truth[start : start + int(rng.integers(20, 60)), k] = 1.0
        truth[rng.integers(0, t - 30, size=4)[:, None] + np.arange(30), k] = 1.0
    soft = np.clip(truth * 0.8 + 0.1 + 0.05 * rng.standard_normal(truth.shape), 0, 1)
    rec = {"audio_filepath": "s.wav", "duration": duration, "offset": 0.0}
    windows = cut_windows([rec], 12.0, 6.0)
    outs = [soft[int(round(w["window_start"] * fr)) :][: int(12 * fr)] for w in windows]
    perms = [rng.permutation(3) for _ in windows]
    shuffled = [o[:, p] for o, p in zip(outs, perms, strict=True)]
    (plain,) = stitch_sessions(windows, outs, fr, [duration])
    (stitched,) = stitch_sessions(windows, shuffled, fr, [duration])
    np.testing.assert_allclose(stitched, plain[:, perms[0]], atol=1e-9)
    np.testing.assert_allclose(plain, soft, atol=1e-9)


def test_hysteresis_and_turn_cleaning():
    p = np.array([0.1, 0.6, 0.8, 0.45, 0.45, 0.2, 0.45, 0.1, 0.7, 0.1])
    starts, ends = hysteresis(p, onset=0.5, offset=0.4)
    # 1-5: rises above 0.5 and stays above 0.4; 6 never reaches the onset; 8 alone
    assert starts.tolist() == [1, 8] and ends.tolist() == [5, 9]
    pp = PostProcessing(pad_onset=0.5, pad_offset=0.5, min_dur_off=1.0, min_dur_on=3.0)
    s, e = clean_turns(np.array([1.0, 5.0, 9.0]), np.array([3.0, 6.0, 9.2]), pp, 9.5)
    # padded: [0.5, 3.5] [4.5, 6.5] [8.5, 9.5]; gaps of 1.0 and 2.0 s: none shorter than 1 s
    # filled, then [8.5, 9.5] (1 s) is shorter than min_dur_on
    assert s.tolist() == [0.5] and e.tolist() == [3.5]
    pp = PostProcessing(min_dur_off=1.5, min_dur_on=0.5)
    s, e = clean_turns(np.array([1.0, 4.0, 9.0]), np.array([3.0, 6.0, 9.2]), pp, 10.0)
    assert s.tolist() == [1.0] and e.tolist() == [6.0]  # gap 1 s filled, 0.2 s turn removed
    segs = to_segments("u", np.array([[0.9, 0.1]] * 5 + [[0.1, 0.9]] * 5), 10.0,
                       PostProcessing(), 1.0, offset=2.0)  # fmt: skip
    assert [(g.speaker, g.onset, g.duration) for g in segs] == [("spk0", 2.0, 0.5),
                                                                ("spk1", 2.5, 0.5)]  # fmt: skip


# -- the task --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def diar_data(tmp_path_factory):
    return make_diar_folder(tmp_path_factory.mktemp("diar"))


#: a toy recipe: 8 s crops, small head, no dropout; the dev grid search kept (it is the task's)
TOY = ["trainer.progress=false", "trainer.batch_size=4", "trainer.patience=50",
       "diar.train_seconds=6", "diar.window_seconds=8", "diar.hop_seconds=4",
       "diar.hidden_size=32", "diar.proj_dim=32", "diar.dropout=0", "diar.bootstrap=100",
       "optim.lr=3e-3"]  # fmt: skip


def _diar_run(tmp_path, data, *extra, epochs=12):
    return run_toy("diar", tmp_path, data, ENCODER, TOY, *extra, epochs=epochs)


def test_a_trained_head_beats_an_untrained_one(tmp_path, diar_data):
    r, trained = _diar_run(tmp_path, diar_data)
    _, untrained = _diar_run(tmp_path, diar_data, "optim.lr=0", epochs=1)
    der, der0 = (x.metrics["test"]["der"]["value"] for x in (trained, untrained))
    assert der < der0 - 30, (der, der0)
    m = trained.metrics["test"]
    assert m["der"]["ci95"][0] <= der <= m["der"]["ci95"][1]
    assert m["missed"]["value"] + m["false_alarm"]["value"] + m["confusion"]["value"] == (
        pytest.approx(der, abs=1e-6)
    )
    assert m["der_collar25"]["value"] <= der and m["sessions"]["value"] == 4
    post = trained.tuned["post_processing"]
    assert trained.tuned["tuned"] <= trained.tuned["configured"] and set(post) == {
        "onset", "offset", "median_seconds", "pad_onset", "pad_offset", "min_dur_on",
        "min_dur_off",
    }  # fmt: skip
    # RTTM out: one per session and one for the split, and they score to the reported DER
    hyp = read_rttm(r.dir / trained.artifacts["test_rttm"])
    assert {s.file_id for s in hyp} <= {f"test-s{k}" for k in range(4)}
    assert len(list((r.dir / "test_rttm").glob("*.rttm"))) == 4
    table = json.loads((r.dir / "test_sessions.json").read_text())
    assert [row["uri"] for row in table] == [f"test-s{k}" for k in range(4)]


def test_too_many_speakers_is_an_error_naming_the_session(tmp_path, diar_data):
    with pytest.raises(TaskError, match=r"train-s\d+.*more than diar.max_speakers=1"):
        _diar_run(tmp_path, diar_data, "diar.max_speakers=1", epochs=1)


def test_a_missing_rttm_file_id_names_the_manifest_record(tmp_path):
    data = make_diar_folder(tmp_path / "d", {"train": 2, "dev": 1, "test": 1})
    rttm = data / "diar" / "dev" / "rttm" / "dev-s0.rttm"
    rttm.write_text(rttm.read_text().replace("dev-s0", "other"))
    with pytest.raises(TaskError, match=r"dev_manifest.json: record 1: .* no turns of file id"):
        _diar_run(tmp_path, data, epochs=1)


def test_the_head_runs_on_pooled_frames_and_answers_at_the_encoder_rate():
    """fbank's 10 ms frames reach the diarization head averaged by 8 (ASR: by 4); each head
    output stands for the frames it averaged, so targets and stitching keep the encoder rate."""
    import torch

    from nestbench.config import resolve_run_config
    from nestbench.layers import frame_pool
    from nestbench.task import EncoderInfo, get_task

    fbank = EncoderInfo("fbank", 16000, 160, 80, 0, 1)
    nest = EncoderInfo("nest", 16000, 1280, 16, 2, 3)
    task = get_task("diar")(resolve_run_config("diar", []))
    task.info = fbank
    assert task.pool == 8
    head = task.build_head(fbank).eval()
    x, lengths = torch.randn(2, 83, 80), torch.tensor([83, 50])
    logits = task._logits(head, x, lengths)
    assert logits.shape == (2, 83, 4)
    pooled = head(*frame_pool(x, lengths, 8))
    assert torch.equal(logits[:, ::8], pooled) and torch.equal(logits[:, 7], pooled[:, 0])
    task.info = nest
    assert task.pool == 1
    asr = get_task("asr")(resolve_run_config("asr", []))
    asr.info = fbank
    assert (asr.pool, asr.upsample) == (4, 1)
    asr.info = nest
    assert (asr.pool, asr.upsample) == (1, 2)
    bad = get_task("diar")(resolve_run_config("diar", ["diar.frame_pool=9"]))
    bad.info = fbank
    with pytest.raises(TaskError, match="diar.frame_pool"):
        _ = bad.pool
