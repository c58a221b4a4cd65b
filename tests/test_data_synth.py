"""The embedded corpus at size ``tiny``: determinism, splits, trials, diarization sessions,
SLURP records, data card, CLI."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf
from click.testing import CliRunner

from nestbench.data import embedded
from nestbench.data.check import check_path
from nestbench.data.cli import data
from nestbench.data.manifest import read_manifest
from nestbench.data.rttm import overlap_ratio, read_rttm, read_uem
from nestbench.data.slurp import annotation_problems, read_slurp, record_entities
from nestbench.data.synth import (
    DIAR_DURATION_BOUNDS,
    DIAR_OVERLAP_BOUNDS,
    SPLITS,
    CorpusExistsError,
    synthesize_corpus,
)
from nestbench.data.trials import TrialResolver, read_trials
from tests.data_helpers import tiny_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return tiny_corpus(tmp_path_factory, seed=0, workers=2)


def _files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(corpus, tmp_path_factory):
    """A second run, in one process instead of two, writes exactly the same bytes."""
    again = tiny_corpus(tmp_path_factory, seed=0, workers=1)
    a, b = _files(corpus), _files(again)
    assert sorted(a) == sorted(b)
    different = [name for name in a if a[name] != b[name]]
    assert different == []
    assert sum(name.endswith(".wav") for name in a) > 100


def test_layout_and_audio_format(corpus):
    for task in ("asr", "sv", "diar", "slu"):
        for split in SPLITS:
            records = read_manifest(corpus / task / f"{split}_manifest.json")
            assert records, (task, split)
            for r in records[:3]:
                info = sf.info(r["audio_filepath"])
                assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
                assert r["duration"] == pytest.approx(info.frames / 16000, abs=1e-6)
    line = (corpus / "asr" / "train_manifest.json").read_text().splitlines()[0]
    assert not json.loads(line)["audio_filepath"].startswith("/")  # relative paths
    trans = sorted((corpus / "asr" / "train").glob("*/*/*.trans.txt"))
    assert trans and trans[0].read_text().split(" ", 1)[1].strip().isupper()
    assert (corpus / "slu" / "dataset" / "slurp" / "devel.jsonl").is_file()
    assert (corpus / "speakers.tsv").read_text().count("\n") == 20  # header + 19 speakers


def test_check_passes_on_the_corpus(corpus):
    report = check_path(corpus)
    assert report.errors == [], report.errors[:5]
    assert report.manifests == 12 and report.trial_lists == 2 and report.slurp_files == 3


def _speakers(corpus, task, split, key):
    return {r[key] for r in read_manifest(corpus / task / f"{split}_manifest.json")}


def test_split_disjointness(corpus):
    for task, key in (("asr", "speaker"), ("sv", "label"), ("slu", "speaker")):
        train = _speakers(corpus, task, "train", key)
        dev = _speakers(corpus, task, "dev", key)
        test = _speakers(corpus, task, "test", key)
        assert train and dev and test
        assert not train & test and not train & dev and not dev & test, task
    # the same pools everywhere: no test speaker trains any task
    asr_train = {f"id{s}" for s in _speakers(corpus, "asr", "train", "speaker")}
    assert not asr_train & _speakers(corpus, "sv", "test", "label")
    diar_test = {
        s.speaker
        for r in read_manifest(corpus / "diar" / "test_manifest.json")
        for s in read_rttm(r["rttm_filepath"])
    }
    assert not diar_test & _speakers(corpus, "sv", "train", "label")


def test_trials_balanced_and_resolvable(corpus):
    for split in ("dev", "test"):
        trials = read_trials(corpus / "sv" / f"{split}_trials.txt")
        labels = Counter(t.label for t in trials)
        assert labels[1] == labels[0] > 0
        records = read_manifest(corpus / "sv" / f"{split}_manifest.json")
        by_path = {r["audio_filepath"]: r["label"] for r in records}
        resolver = TrialResolver(by_path)
        for t in trials:
            (e,), (s,) = resolver.resolve(t.enroll), resolver.resolve(t.test)
            assert (by_path[e] == by_path[s]) == (t.label == 1)
            assert (corpus / "sv" / "wav" / t.enroll).is_file()
        assert len({(t.enroll, t.test) for t in trials}) == len(trials)


def test_diarization_sessions(corpus):
    for split in SPLITS:
        for r in read_manifest(corpus / "diar" / f"{split}_manifest.json"):
            info = sf.info(r["audio_filepath"])
            length = info.frames / info.samplerate
            assert DIAR_DURATION_BOUNDS[0] <= length <= DIAR_DURATION_BOUNDS[1]
            segs = read_rttm(r["rttm_filepath"])
            assert {s.file_id for s in segs} == {Path(r["audio_filepath"]).stem}
            assert all(s.onset >= 0 and s.end <= length for s in segs)
            assert 2 <= r["num_speakers"] == len({s.speaker for s in segs}) <= 4
            assert DIAR_OVERLAP_BOUNDS[0] <= overlap_ratio(segs) <= DIAR_OVERLAP_BOUNDS[1]
            (uem,) = read_uem(r["uem_filepath"])
            assert uem.onset == 0.0 and uem.offset == pytest.approx(length, abs=1e-3)


def test_slurp_records(corpus):
    all_sentences = []
    for split, stem in (("train", "train"), ("dev", "devel"), ("test", "test")):
        records = read_slurp(corpus / "slu" / "dataset" / "slurp" / f"{stem}.jsonl")
        manifest = read_manifest(corpus / "slu" / f"{split}_manifest.json")
        by_file = {Path(m["audio_filepath"]).name: m for m in manifest}
        for rec in records:
            assert annotation_problems(rec) == []  # entities match sentence_annotation
            assert rec["intent"] == f"{rec['scenario']}_{rec['action']}"
            for recording in rec["recordings"]:
                m = by_file[recording["file"]]
                assert (corpus / "slu" / "audio" / "slurp_synth" / recording["file"]).is_file()
                assert m["text"] == rec["sentence"] and m["label"] == rec["intent"]
                assert m["entities"] == record_entities(rec)
        assert len(manifest) == sum(len(r["recordings"]) for r in records)
        all_sentences += [r["sentence"] for r in records]
    assert len(all_sentences) == len(set(all_sentences))  # no sentence in two splits


def test_data_card(corpus):
    card = (corpus / "README.md").read_text()
    stats = json.loads((corpus / "corpus.json").read_text())
    assert stats["size"] == "tiny" and stats["seed"] == 0
    assert stats["generator_version"] in card and "| seed | 0 |" in card
    assert f"{stats['total_hours']:.2f} h" in card
    for word in ("asr", "sv", "diar", "slu", "trials", "overlap", "intents", "speakers"):
        assert word in card
    assert stats["speakers"]["total"] == 19


def test_refuses_non_empty_folder_unless_forced(tmp_path):
    out = tmp_path / "c"
    out.mkdir()
    (out / "asr").mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(CorpusExistsError, match="--force"):
        synthesize_corpus(out, size="tiny", progress=False)
    result = CliRunner().invoke(data, ["synth", "--out", str(out), "--size", "tiny", "--quiet"])
    assert result.exit_code != 0 and "not empty" in result.output
    with pytest.raises(ValueError, match="unknown size"):
        synthesize_corpus(tmp_path / "x", size="huge")


def test_cli_synth_force_and_check(tmp_path, corpus):
    out = tmp_path / "c"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "asr").mkdir()
    (out / "asr" / "stale.wav").write_bytes(b"old")
    result = CliRunner().invoke(
        data,
        [
            "synth",
            "--out",
            str(out),
            "--size",
            "tiny",
            "--seed",
            "0",
            "--force",
            "--quiet",
            "--workers",
            "2",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "README.md" in result.output
    assert (out / "notes.txt").read_text() == "keep me"
    assert not (out / "asr" / "stale.wav").exists()
    assert (out / "README.md").read_bytes() == (corpus / "README.md").read_bytes()
    result = CliRunner().invoke(data, ["check", str(out), "--headers-only"])
    assert result.exit_code == 0, result.output
    assert "0 error(s)" in result.output


def test_ensure_embedded_corpus_caches(tmp_path, monkeypatch, corpus):
    calls = []

    def fake(out, size, seed, workers, progress):
        calls.append(out)
        Path(out).mkdir(parents=True)
        (Path(out) / "corpus.json").write_text((corpus / "corpus.json").read_text())

    monkeypatch.setattr(embedded, "synthesize_corpus", fake)
    monkeypatch.setenv("NESTBENCH_DATA", str(tmp_path / "cache"))
    first = embedded.ensure_embedded_corpus("tiny", seed=0)
    second = embedded.ensure_embedded_corpus("tiny", seed=0)
    assert first == second == embedded.corpus_dir("tiny", 0)
    assert first.parent == tmp_path / "cache" and len(calls) == 1
    assert not list((tmp_path / "cache").glob("*.partial-*"))
