"""The ASR task: text normaliser, WER/CER against jiwer, CTC feasibility, decoding, bad input,
one utterance overfitted to WER 0, and end-to-end runs that must beat an untrained head."""

from __future__ import annotations

import json

import jiwer
import numpy as np
import pytest
import torch
from nestbench.tasks.asr.decode import BeamDecoder, greedy, write_lexicon
from nestbench.tasks.asr.head import CTCHead, spec_augment
from nestbench.tasks.asr.task import ctc_frames_needed
from nestbench.tasks.asr.text import normalize, outside_alphabet
from nestbench.tasks.asr.units import train_units

from nestbench.config import resolve_run_config
from nestbench.data.manifest import read_manifest
from nestbench.metrics.asr import edit_counts, wer_cer
from nestbench.task import EncoderInfo, TaskError, get_task
from tests.toy_tasks import make_ctc_folder, run_toy

ENCODER = "tests.toy_encoders:SpectralEncoder"  # 50 frames/s
FAST = [
    "trainer.progress=false",
    "trainer.batch_size=8",
    "asr.bootstrap=100",
    "asr.vocab_size=16",
    "asr.hidden_size=64",
    "asr.proj_dim=64",
    "asr.num_layers=1",
]


# -- text and metrics -------------------------------------------------------------------------
def test_normaliser():
    assert normalize("  Hello, World!  It’s  “fine”—really.") == "hello world it's fine really"
    assert normalize("Café naïve") == "cafe naive"
    assert outside_alphabet(normalize("room 101 ok")) == {"1", "0"}
    assert normalize("") == ""


@pytest.mark.parametrize(
    ("refs", "hyps"),
    [
        (["a b c", "the cat sat on the mat"], ["a c d", "the cat sat on mat extra"]),
        (["one two three"], ["one two three"]),
        (["hello world", "x y z"], ["hello", "x q y z"]),
    ],
)
def test_wer_and_cer_agree_with_jiwer(refs, hyps):
    m = wer_cer(refs, hyps, n_resamples=200)
    assert m["wer"].value == pytest.approx(100 * jiwer.wer(refs, hyps))
    assert m["cer"].value == pytest.approx(100 * jiwer.cer(refs, hyps))
    o = jiwer.process_words(refs, hyps)
    assert (m["substitutions"], m["deletions"], m["insertions"]) == (
        o.substitutions,
        o.deletions,
        o.insertions,
    )
    lo, hi = m["wer"].ci95
    assert lo <= m["wer"].value <= hi


def test_empty_hypothesis_and_empty_reference():
    # an empty hypothesis deletes its reference; an empty reference makes its words insertions
    counts = edit_counts(["a b c", "", "x"], ["", "p q", "x"])
    assert counts.tolist() == [[0, 0, 3, 0], [0, 0, 0, 2], [1, 0, 0, 0]]
    m = wer_cer(["a b c", "", "x"], ["", "p q", "x"], n_resamples=100)
    assert m["wer"].value == pytest.approx(100 * 5 / 4)
    assert m["reference_words"] == 4


# -- units, CTC feasibility, head ---------------------------------------------------------------
def test_units_round_trip_and_ctc_frames(tmp_path):
    texts = ["the cat sat on the mat", "a dog ran", "the mat was red"] * 5
    units = train_units(texts, tmp_path / "units.model", 30)
    assert (tmp_path / "units.model").is_file() and units.num_classes <= 31
    for t in texts[:3]:
        ids = units.encode(t)
        assert 0 not in ids and units.decode(ids) == t
    assert ctc_frames_needed([3, 3, 4]) == 4 and ctc_frames_needed([1, 2, 3]) == 3


def test_head_is_padding_invariant_and_upsamples():
    torch.manual_seed(0)
    head = CTCHead(8, 5, proj_dim=16, hidden_size=8, num_layers=2, dropout=0.0, upsample=2).eval()
    x = torch.randn(1, 30, 8)
    a, la = head(x, torch.tensor([30]))
    b, lb = head(torch.cat([x, torch.randn(1, 10, 8)], 1), torch.tensor([30]))
    assert a.shape == (1, 60, 5) and la.tolist() == [60] == lb.tolist()
    torch.testing.assert_close(a, b[:, :60])
    x = torch.randn(4, 50, 10) + 3.0
    lengths = torch.tensor([50, 20, 50, 50])
    masked = spec_augment(x, lengths, 2, 5, 2, 3, torch.Generator().manual_seed(0))
    changed = masked != x
    assert masked.shape == (4, 50, 10) and 0 < float(changed.float().mean()) < 0.5
    assert not changed[1, 20:].any()  # masks stay within an utterance's frames
    mean = x[0].mean(0)
    torch.testing.assert_close(masked[0][changed[0]], mean.expand(50, 10)[changed[0]])


def test_greedy_and_lexicon_free_beam_agree_on_a_peaked_output():
    pieces = ["<blank>", "<unk>", "▁a", "▁b", "c"]
    path = [2, 2, 0, 3, 4, 4, 0, 0, 2]
    lp = torch.full((1, len(path), 5), -20.0)
    lp[0, torch.arange(len(path)), torch.tensor(path)] = 0.0
    lp = lp.log_softmax(-1)
    assert greedy(lp, torch.tensor([9])) == [[2, 3, 4, 2]]
    assert BeamDecoder(pieces, beam_size=5)(lp, torch.tensor([9])) == [[2, 3, 4, 2]]


def test_beam_search_with_a_word_language_model(tmp_path):
    """A unigram KenLM (ARPA) and a lexicon turn an ambiguous output into the LM's word."""
    arpa = tmp_path / "lm.arpa"
    arpa.write_text(
        "\\data\\\nngram 1=5\nngram 2=2\n\n\\1-grams:\n-1.0\t<unk>\t0\n-99\t<s>\t-0.3\n"
        "-0.3\t</s>\t0\n-0.1\tcat\t-0.1\n-3.0\tcot\t-0.1\n\n\\2-grams:\n-0.1\t<s> cat\n"
        "-0.1\tcat </s>\n\n\\end\\\n"
    )
    pieces = ["<blank>", "<unk>", "▁c", "a", "o", "t"]
    lexicon = write_lexicon(tmp_path / "lexicon.txt", ["cat", "cot"], lambda w: ["▁c", w[1], "t"])
    lp = torch.full((1, 3, 6), -9.0)
    lp[0, 0, 2] = lp[0, 2, 5] = 0.0
    lp[0, 1, 3], lp[0, 1, 4] = -0.8, -0.6  # acoustically "o" a little ahead of "a"
    lp = lp.log_softmax(-1)
    assert greedy(lp, torch.tensor([3])) == [[2, 4, 5]]  # "cot"
    beam = BeamDecoder(pieces, beam_size=10, lm=arpa, lexicon=lexicon, lm_weight=2.0)
    assert beam(lp, torch.tensor([3])) == [[2, 3, 5]]  # the LM prefers "cat"
    with pytest.raises(TaskError, match="asr.lm: .*nope.arpa is not a file"):
        BeamDecoder(pieces, lm=tmp_path / "nope.arpa")
    (tmp_path / "bad.arpa").write_text("not an arpa file\n")
    with pytest.raises(TaskError, match="asr.lm: .*bad.arpa: cannot load it"):
        BeamDecoder(pieces, lm=tmp_path / "bad.arpa", lexicon=lexicon)


# -- data handling ----------------------------------------------------------------------------
def _task(tmp_path, *overrides):
    cfg = resolve_run_config("asr", [*FAST, *overrides])
    task = get_task("asr")(cfg)
    task.setup(EncoderInfo("toy", 16000, 320, 16, 2, 3), tmp_path / "run")
    (tmp_path / "run").mkdir(exist_ok=True)
    return task


def _append(folder, split, records):
    with open(folder / f"{split}.json", "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")


def test_bad_transcripts_are_counted_and_left_out_of_training(tmp_path):
    data = make_ctc_folder(tmp_path / "d", {"train": 10, "dev": 3, "test": 3})
    train = read_manifest(data / "train.json")
    base = {"audio_filepath": train[0]["audio_filepath"], "duration": train[0]["duration"]}
    _append(
        data,
        "train",
        [
            {**base, "text": ""},  # empty
            {**base, "text": "a b 42"},  # digits: outside the alphabet
            {**base, "text": "a b c d " * 40},  # far more units than frames
            {**base, "duration": 31.0, "text": "a b"},  # longer than max_train_seconds
        ],
    )
    task = _task(tmp_path)
    splits = task.load(data)
    assert splits["train"][11]["_ref"] == "a b"  # the digits were dropped
    kept = task.examples("train", splits["train"])
    assert len(kept) == 11
    report = json.loads((tmp_path / "run" / "asr_data.json").read_text())
    assert report["train"]["dropped"] == {"empty": 1, "too_long_for_ctc": 1, "longer_than_max": 1}
    assert report["train"]["outside_alphabet"] == 1
    with pytest.raises(TaskError, match=r"train\.json: record 12: characters '24' are outside"):
        _task(tmp_path, "asr.unknown_chars=error").load(data)
    strict = _task(tmp_path, "asr.impossible=error")
    with pytest.raises(TaskError, match="CTC steps for .* frames"):
        strict.examples("train", strict.load(data)["train"])


def test_the_loss_refuses_an_impossible_alignment(tmp_path):
    task = _task(tmp_path)
    task.load(make_ctc_folder(tmp_path / "d", {"train": 6, "dev": 2, "test": 2}))
    head = task.build_head(task.info)
    x, lengths = torch.randn(1, 3, 16), torch.tensor([3])
    with pytest.raises(TaskError, match="CTC loss of 1 utterance"):
        task.loss(head, x, lengths, [torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])])


# -- learning ----------------------------------------------------------------------------------
def test_one_utterance_overfits_to_wer_zero(tmp_path):
    """Frozen features of one utterance, a tiny head, a few hundred Adam steps: WER 0."""
    from tests.toy_encoders import SpectralEncoder

    data = make_ctc_folder(tmp_path / "d", {"train": 1, "dev": 1, "test": 1})
    task = _task(tmp_path, "asr.time_masks=0", "asr.feature_masks=0")
    splits = task.load(data)
    (item,) = task.examples("train", splits["train"])
    enc = SpectralEncoder().eval()
    from nestbench.audio import load_item

    wav = load_item(item)[None]
    with torch.no_grad():
        feats = enc(wav, torch.tensor([wav.shape[1]])).hidden_states[-1]
    lengths = torch.tensor([feats.shape[1]])
    torch.manual_seed(0)
    head = CTCHead(16, task.units.num_classes, proj_dim=32, hidden_size=32, num_layers=1,
                   dropout=0.0, upsample=1)  # fmt: skip
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    target = [task.target(item, 0.0, None)]
    for _ in range(600):
        opt.zero_grad()
        task.loss(head.train(), feats, lengths, target).backward()
        opt.step()
    (hyp,) = task.predict(head.eval(), feats, lengths)
    assert wer_cer([item["_ref"]], [hyp], n_resamples=0)["wer"].value == 0.0, hyp


@pytest.fixture(scope="module")
def ctc_data(tmp_path_factory):
    return make_ctc_folder(
        tmp_path_factory.mktemp("asr") / "d", {"train": 48, "dev": 8, "test": 12}
    )


#: CTC leaves its all-blank plateau after ~500 steps here (80 epochs: 960 steps, ~25 s); masks as wide as these toy symbols
#: (0.2-0.3 s) would hide them, so the end-to-end runs train without SpecAugment or dropout.
LEARN = ["trainer.batch_size=4", "asr.time_masks=0", "asr.feature_masks=0", "asr.dropout=0",
         "featurizer.layer_norm=true", "optim.lr=3e-3"]  # fmt: skip


def _asr_run(tmp_path, data, *extra, epochs=80):
    return run_toy("asr", tmp_path, data, ENCODER, [*FAST, *LEARN, "trainer.patience=50"], *extra,
                   epochs=epochs)  # fmt: skip


def test_a_trained_head_beats_an_untrained_one(tmp_path, ctc_data):
    r, trained = _asr_run(tmp_path, ctc_data)
    _, untrained = _asr_run(tmp_path, ctc_data, "optim.lr=0", epochs=1)
    wer, wer0 = (x.metrics["test"]["wer"]["value"] for x in (trained, untrained))
    assert wer < wer0 - 35, (wer, wer0)  # 30 vs 89 when measured
    # the best epoch is picked on dev CER (asr.select_on), the first of its lowest values
    cers = [h["cer"] for h in trained.dev_history]
    assert trained.dev_metric == "cer" and trained.best_epoch == cers.index(min(cers))
    run_dir = r.dir
    assert (run_dir / "units.model").is_file()
    assert trained.artifacts == {
        "units": "units.model",
        "data_report": "asr_data.json",
        "test_predictions": "test_predictions.json",
        "test_items": "test_items.json",  # per-item WER/CER components (paired tests)
    }
    preds = read_manifest(run_dir / "test_predictions.json")
    assert len(preds) == 12 and all("pred_text" in p and "text" in p for p in preds)
    m = trained.metrics["test"]
    assert m["substitutions"]["value"] + m["deletions"]["value"] <= m["reference_words"]["value"]
    assert m["cer"]["ci95"][0] <= m["cer"]["value"] <= m["cer"]["ci95"][1]


def test_finetune_and_beam_decoding_run(tmp_path, ctc_data):
    _, result = _asr_run(tmp_path, ctc_data, "mode=finetune", "asr.decoder=beam",
                         "asr.beam_size=8", epochs=2)  # fmt: skip
    assert result.config["mode"] == "finetune"
    assert 0 <= result.metrics["test"]["wer"]["value"] <= 100 * np.inf
