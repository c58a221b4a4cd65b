"""The SLU task: slot tags in and out of subword units, bad input, and a trained head beating an
untrained one's intent accuracy on toy utterances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from nestbench.tasks.asr.units import train_units
from nestbench.tasks.slu.tags import join_tagged, parse_tags, tag_symbols, tag_text

from nestbench.task import TaskError
from tests.toy_tasks import run_toy

SR = 16000
ENCODER = "tests.toy_encoders:SpectralEncoder"
FREQS = (400.0, 900.0, 1700.0, 2900.0)
#: the first symbol says the intent
INTENTS = (("alarm", "set"), ("weather", "query"), ("iot", "wemo_on"), ("play", "music"))


def test_tags_round_trip_through_units(tmp_path):
    words = "remind me to call my team the first of june tonight".split()
    tagged, missing = tag_text(words, [("date", ["the", "first", "of", "june"]),
                                       ("event_name", ["call", "my", "team"]),
                                       ("place", ["paris"])])  # fmt: skip
    assert missing == [("place", "paris")]
    text = join_tagged(tagged)
    assert text == ("remind me to<event_name> call my team</event_name><date> the first of "
                    "june</date> tonight")  # fmt: skip
    units = train_units([text, "wake me up at <time> nine am </time>"], tmp_path / "u.model", 40,
                        symbols=tag_symbols(["date", "event_name", "time"]))  # fmt: skip
    ids = units.encode(text)
    # a tag is one unit: the sentence's units are its words' units plus one per tag
    plain = units.encode(" ".join(words))
    pieces = [units.pieces()[i] for i in ids]
    assert len(ids) == len(plain) + 4 and pieces.count("<event_name>") == 1, pieces
    words_out, entities = parse_tags(units.decode(ids))
    assert words_out == words
    assert entities == [{"type": "event_name", "filler": "call my team"},
                        {"type": "date", "filler": "the first of june"}]  # fmt: skip


def test_the_tag_decoder_on_hand_made_sequences():
    # a begin tag closes an open entity; an end tag with nothing open and an empty entity are
    # ignored; an entity open at the end closes there
    words, ents = parse_tags("</time> set <time> <date> monday <time> nine am")
    assert words == ["set", "monday", "nine", "am"]
    assert ents == [{"type": "date", "filler": "monday"}, {"type": "time", "filler": "nine am"}]
    assert parse_tags("no tags here") == (["no", "tags", "here"], [])


def make_slu_folder(root: Path, per_split: dict | None = None, seed: int = 0) -> Path:
    """Utterances of 2-4 tone symbols (words a-d): all but the last are the intent's symbol,
    the last (any symbol) is a ``thing`` entity; ``root/slu/<split>_manifest.json``."""
    rng = np.random.default_rng(seed)
    per_split = per_split or {"train": 48, "dev": 12, "test": 16}
    base = root / "slu"
    for split, n in per_split.items():
        lines = []
        for u in range(n):
            symbols = [u % 4] * int(rng.integers(1, 4)) + [int(rng.integers(0, 4))]
            parts = [0.01 * rng.standard_normal(int(SR * 0.1))]
            for s in symbols:
                t = np.arange(int(SR * rng.uniform(0.25, 0.35))) / SR
                parts += [0.3 * np.sin(2 * np.pi * FREQS[s] * t),
                          0.01 * rng.standard_normal(int(SR * 0.12))]  # fmt: skip
            wav = base / split / f"u{u}.wav"
            wav.parent.mkdir(parents=True, exist_ok=True)
            x = np.concatenate(parts)
            sf.write(wav, x.astype(np.float32), SR, subtype="PCM_16")
            words = ["abcd"[s] for s in symbols]
            scenario, action = INTENTS[u % 4]
            lines.append(json.dumps({
                "audio_filepath": f"{split}/u{u}.wav", "duration": round(x.size / SR, 4),
                "text": " ".join(words), "scenario": scenario, "action": action,
                "entities": [{"type": "thing", "filler": words[-1]}],
            }) + "\n")  # fmt: skip
        (base / f"{split}_manifest.json").write_text("".join(lines))
    return root


@pytest.fixture(scope="module")
def slu_data(tmp_path_factory):
    return make_slu_folder(tmp_path_factory.mktemp("slu"))


TOY = ["trainer.progress=false", "trainer.batch_size=4", "trainer.patience=50",
       "slu.time_masks=0", "slu.feature_masks=0", "slu.dropout=0", "slu.intent_dropout=0",
       "slu.hidden_size=32", "slu.proj_dim=32", "slu.num_layers=1", "slu.intent_hidden=32",
       "slu.vocab_size=8", "slu.bootstrap=100", "optim.lr=3e-3"]  # fmt: skip


def _slu_run(tmp_path, data, *extra, epochs=10):
    return run_toy("slu", tmp_path, data, ENCODER, TOY, *extra, epochs=epochs)


def test_a_trained_head_beats_an_untrained_one(tmp_path, slu_data):
    r, trained = _slu_run(tmp_path, slu_data)
    _, untrained = _slu_run(tmp_path, slu_data, "optim.lr=0", epochs=1)
    acc, acc0 = (x.metrics["test"]["intent_accuracy"]["value"] for x in (trained, untrained))
    assert acc > acc0 + 40, (acc, acc0)  # chance is 25%
    m = trained.metrics["test"]
    assert m["slu_f1"]["ci95"][0] <= m["slu_f1"]["value"] <= m["slu_f1"]["ci95"][1]
    assert m["recordings"]["value"] == 16
    lines = (r.dir / "test_predictions.jsonl").read_text().splitlines()
    pred = json.loads(lines[0])
    assert set(pred) == {"file", "scenario", "action", "entities"} and pred["file"] == "u0.wav"
    assert len(lines) == 16 and (r.dir / "units.model").is_file()


def _edit(data: Path, split: str, line: int, **changes) -> None:
    path = data / "slu" / f"{split}_manifest.json"
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    rows[line].update(changes)
    path.write_text("".join(json.dumps(x) + "\n" for x in rows))


def test_bad_input_is_named_or_counted(tmp_path):
    data = make_slu_folder(tmp_path / "d", {"train": 8, "dev": 4, "test": 4})
    _edit(data, "test", 1, scenario="news", action="query")  # an intent never trained
    _edit(data, "train", 2, entities=[{"type": "thing", "filler": "zebra"}])  # not in the text
    with pytest.raises(TaskError, match=r"test_manifest.json: intent\(s\) news_query never"):
        _slu_run(tmp_path, data, "slu.unknown_intent=error", epochs=1)
    with pytest.raises(TaskError, match=r"train_manifest.json: record 3: entity thing 'zebra'"):
        _slu_run(tmp_path, data, "slu.missing_span=error", epochs=1)
    r, result = _slu_run(tmp_path, data, epochs=1)  # counted and scored
    report = json.loads((r.dir / "slu_data.json").read_text())
    assert report["train"]["entities_not_in_sentence"] == 1
    assert result.metrics["test"]["unknown_intent_recordings"]["value"] == 1
    (data / "slu" / "dev" / "u0.wav").unlink()
    with pytest.raises(TaskError, match=r"dev_manifest.json: record 1: recording .* not exist"):
        _slu_run(tmp_path, data, "seed=1", epochs=1)


def test_semantics_strings_parse_back_or_count_as_wrong():
    from nestbench.tasks.slu.semantics import parse_semantics, semantics_string

    gold = {"scenario": "alarm", "action": "set",
            "entities": [{"type": "time", "filler": "eight am"}]}  # fmt: skip
    text = semantics_string(gold)
    assert text == ("{'scenario': 'alarm', 'action': 'set', 'entities': [{'type': 'time', "
                    "'filler': 'eight am'}]}")  # fmt: skip
    assert parse_semantics(text) == gold
    for bad in ("{'scenario': 'alarm', 'action': 'set', 'entities': [{'type': 'time'",
                "{'scenario': 'alarm'}", "['alarm']", "{'scenario': 1, 'action': 'x'}",
                "{'scenario': 'a', 'action': 'b', 'entities': [{'type': 'x', 'filler': 2}]}",
                "__import__('os')"):  # fmt: skip
        assert parse_semantics(bad) is None, bad


def test_the_seq2seq_head_overfits_a_batch_and_generates_it_back():
    import torch
    from nestbench.tasks.slu.head import Seq2SeqHead

    torch.manual_seed(0)
    head = Seq2SeqHead(16, 20, d_model=32, layers=1, heads=4, ff=64, dropout=0.0, max_len=20)
    x, lengths = torch.randn(2, 25, 16), torch.tensor([25, 18])
    targets = [torch.tensor([3, 4, 5, 6, 7, 3]), torch.tensor([9, 10, 11])]
    opt = torch.optim.Adam(head.parameters(), 3e-3)
    for _ in range(250):
        opt.zero_grad()
        head.loss(x, lengths, targets).backward()
        opt.step()
    assert head.eval().generate(x, lengths) == [t.tolist() for t in targets]


def test_a_seq2seq_run_writes_slurp_predictions(tmp_path, slu_data):
    """Two epochs do not teach a decoder the semantics syntax: what does not parse is written
    as an empty prediction and scored as wrong."""
    extra = ["slu.head=seq2seq", "slu.seq2seq_d_model=32", "slu.seq2seq_layers=1",
             "slu.seq2seq_ff=64", "slu.seq2seq_vocab_size=40"]  # fmt: skip
    r, result = _slu_run(tmp_path, slu_data, *extra, epochs=2)
    preds = [json.loads(x) for x in (r.dir / "test_predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 16 and all(set(p) == {"file", "scenario", "action", "entities"}
                                    for p in preds)  # fmt: skip
    assert 0.0 <= result.metrics["test"]["intent_accuracy"]["value"] <= 100.0


def test_beam_search_finds_what_greedy_misses():
    """A fixed next-token table where the greedy path (A C, p = 0.6 x 0.45 = 0.27) is less likely
    than B (p = 0.4 x 0.9 = 0.36): beam 2 finds B; beam 1 is greedy."""
    import torch
    from nestbench.tasks.slu.head import Seq2SeqHead

    pad, a, b, c, bos, eos = range(6)
    table = {bos: {a: 0.6, b: 0.4}, a: {a: 0.2, b: 0.15, c: 0.45, eos: 0.2},
             b: {eos: 0.9, c: 0.1}, c: {eos: 1.0}}  # fmt: skip

    class Table(Seq2SeqHead):
        def logits(self, memory, memory_pad, tokens):
            out = torch.full((*tokens.shape, self.vocab), -30.0)
            for i, row in enumerate(tokens.tolist()):
                for j, tok in enumerate(row):
                    for nxt, p in table.get(tok, {eos: 1.0}).items():
                        out[i, j, nxt] = float(np.log(p))
            return out

    head = Table(4, 6, d_model=8, layers=1, heads=2, ff=8, dropout=0.0, max_len=6).eval()
    x, lengths = torch.zeros(2, 3, 4), torch.tensor([3, 2])
    assert head.generate(x, lengths) == [[a, c], [a, c]]
    assert head.beam_search(x, lengths, beam=1) == [[a, c], [a, c]]
    assert head.generate(x, lengths, beam=2) == [[b], [b]]
    # a length penalty favours the longer hypothesis: A C scores log(0.27) / 3 > log(0.36) / 2
    assert head.generate(x, lengths, beam=2, length_penalty=1.0) == [[a, c], [a, c]]


def test_frame_pooling_and_mean_max_pooling_ignore_padding():
    import torch
    from nestbench.tasks.slu.head import MeanMaxPooling

    from nestbench.layers import frame_pool

    x = torch.arange(12.0).reshape(1, 6, 2).repeat(2, 1, 1)  # frame t = [2t, 2t + 1]
    x[1, 5:] = 1e6  # padding of the second utterance (length 5)
    pooled, lengths = frame_pool(x, torch.tensor([6, 5]), 2)
    assert lengths.tolist() == [3, 3]
    assert pooled[0].tolist() == [[1.0, 2.0], [5.0, 6.0], [9.0, 10.0]]
    assert pooled[1, 2].tolist() == [8.0, 9.0]  # its last run is frame 4 alone
    same, n = frame_pool(x, torch.tensor([6, 5]), 1)
    assert same is x and n.tolist() == [6, 5]
    stats = MeanMaxPooling()(x, torch.tensor([6, 5]))
    assert stats[1].tolist() == [4.0, 5.0, 8.0, 9.0]  # mean and max of frames 0-4
    assert stats[0].tolist() == [5.0, 6.0, 10.0, 11.0]
