"""The clean pretraining pool: training speakers and fresh sentences only (nothing of any task's
dev or test data reaches pretraining), clean audio, deterministic, and wired into the config."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import soundfile as sf

from nestbench.config import ConfigError
from nestbench.data.manifest import read_manifest
from nestbench.data.pool import PoolError, make_pool, pool_records
from nestbench.data.text import normalize_sentence
from nestbench.pretrain.config import resolve_pretrain_config
from tests.data_helpers import tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tiny_corpus(tmp_path_factory)


@pytest.fixture(scope="module")
def pool(corpus):
    return make_pool(corpus, 0.04, progress=False)


def _speaker_pools(corpus) -> dict[str, str]:
    """LibriSpeech-style speaker id -> pool (train, dev, test, babble), from speakers.tsv."""
    with open(corpus / "speakers.tsv") as f:
        return {str(10000 + int(r["index"])): r["pool"] for r in csv.DictReader(f, delimiter="\t")}


def test_normalize_sentence():
    assert normalize_sentence("Yes, I agree.") == "yes i agree"
    assert normalize_sentence("  What's   the TIME?") == "what's the time"


def test_corpus_lists_every_sentence_it_speaks(corpus):
    """sentences.json holds the transcripts of every ASR and SLU record of every split."""
    listed = json.loads((corpus / "sentences.json").read_text())
    assert set(listed) == {"asr", "sv", "slu", "diar"}
    for dataset in ("asr", "slu"):
        for split in ("train", "dev", "test"):
            spoken = set(listed[dataset][split])
            for rec in read_manifest(corpus / dataset / f"{split}_manifest.json"):
                text = normalize_sentence(rec["text"])  # one sentence, or two (ASR)
                assert text in spoken or any(
                    text.startswith(s + " ") and text[len(s) + 1 :] in spoken for s in spoken
                ), (dataset, split, rec["text"])
    assert all(listed["sv"][s] and listed["diar"][s] for s in ("train", "dev", "test"))


def test_no_dev_or_test_speaker_or_sentence_reaches_pretraining(corpus, pool):
    pools = _speaker_pools(corpus)
    listed = json.loads((corpus / "sentences.json").read_text())
    held_out = {s for d in listed.values() for split in ("dev", "test") for s in d[split]}
    everything = {s for d in listed.values() for v in d.values() for s in v}
    assert held_out  # the check below is not vacuous
    for part in ("train", "val"):
        records = pool_records(pool, part)
        assert records
        assert {pools[r["speaker"]] for r in records} == {"train"}, part
    # every sentence of the pool is new: in no split of any dataset, training included
    pool_sentences = set()
    for part in ("train", "val", "eval"):
        for r in pool_records(pool, part):
            assert r["text"] == " ".join(r["sentences"])
            pool_sentences.update(r["sentences"])
    assert pool_sentences and not pool_sentences & everything
    assert not pool_sentences & held_out
    # the eval part (masked-token accuracy on unseen voices) is test speakers only
    assert {pools[r["speaker"]] for r in pool_records(pool, "eval")} == {"test"}
    # and the pretraining config trains on the train part only
    from nestbench.pretrain import train as train_mod

    cfg = resolve_pretrain_config(None, [], ["data.embedded=tiny", "data.pool_hours=0.04"])
    saved = train_mod.embedded_pool
    train_mod.embedded_pool = lambda size, hours, seed=0: pool
    try:
        train, val = train_mod.data_manifests(cfg)
    finally:
        train_mod.embedded_pool = saved
    assert train == [str(pool / "train_manifest.json")]
    assert val == [str(pool / "val_manifest.json")]


def test_pool_audio_is_clean_and_the_pool_is_reproducible(corpus, pool, tmp_path):
    stats = json.loads((pool / "pool.json").read_text())
    assert stats["parts"]["train"]["hours"] >= 0.03
    for r in pool_records(pool, "train")[:8]:
        x, sr = sf.read(r["audio_filepath"], dtype="int16")
        assert sr == 16000 and abs(len(x) / sr - r["duration"]) < 1e-3
        lead = np.flatnonzero(x)[0]
        assert lead >= 0.04 * sr and not x[:lead].any()  # digital silence: no noise floor
        level = 10 * np.log10(np.mean((x[x != 0] / 32768.0) ** 2))
        assert -45 < level < -10
    # the same corpus, hours and seed give the same files
    import shutil

    copy = tmp_path / "corpus"
    shutil.copytree(corpus, copy, ignore=shutil.ignore_patterns("pretrain"))
    again = make_pool(copy, 0.04, progress=False, workers=1)
    first = pool_records(pool, "train")[0]["audio_filepath"].split("/wav/")[1]
    assert (again / "wav" / first).read_bytes() == (pool / "wav" / first).read_bytes()


def test_pool_errors(corpus, tmp_path):
    with pytest.raises(PoolError, match="hours must be > 0"):
        make_pool(corpus, 0)
    old = tmp_path / "old"
    old.mkdir()
    (old / "corpus.json").write_text((corpus / "corpus.json").read_text())
    with pytest.raises(PoolError, match=r"sentences\.json is missing"):
        make_pool(old, 0.01, progress=False)
    with pytest.raises(ConfigError, match="pool_hours needs data.embedded"):
        resolve_pretrain_config(None, ["/dev/null"], ["data.pool_hours=1"])


def test_planned_sentences_skip_forbidden_ones_and_never_repeat():
    from nestbench.data.pool import plan_sentences

    first = plan_sentences(60, set(), np.random.default_rng(5))
    assert len({normalize_sentence(s) for s in first}) == 60  # each used once
    forbidden = {normalize_sentence(s) for s in first[:30]}
    again = plan_sentences(60, forbidden, np.random.default_rng(5))
    assert not {normalize_sentence(s) for s in again} & forbidden
    assert set(first[30:]) <= set(again)  # the same draws, the forbidden ones skipped
