"""Importers on small fake trees in the corpora's own layouts, and their errors."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from nestbench.data.check import check_path
from nestbench.data.cli import data
from nestbench.data.importers import (
    prepare_librispeech,
    prepare_rttm,
    prepare_slurp,
    prepare_voxceleb,
)
from nestbench.data.importers.common import ImportError_
from nestbench.data.layout import (
    LayoutError,
    Splits,
    manifest_path,
    read_splits,
    split_dir,
    trials_path,
)
from nestbench.data.manifest import ManifestError, read_manifest
from nestbench.data.rttm import read_rttm, read_uem
from nestbench.data.slurp import read_slurp
from nestbench.data.trials import read_trials
from tests.data_helpers import (
    make_librispeech,
    make_rttm_folder,
    make_slurp,
    make_voxceleb,
    tiny_corpus,
    write_wav,
)


# --- LibriSpeech --------------------------------------------------------------------------------
def test_librispeech(tmp_path):
    src = make_librispeech(tmp_path)
    out = tmp_path / "out"
    written = prepare_librispeech(src.parent, out)
    assert sorted(written) == ["dev", "splits", "test-clean", "test-other", "train"]
    assert written["dev"] == manifest_path(out, "asr", "dev")
    dev = read_manifest(written["dev"])
    assert len(dev) == 5
    assert dev[0]["audio_filepath"] == str(src / "dev-clean/174/50561/174-50561-0000.flac")
    assert dev[0]["text"] == "hello world number 0" and dev[0]["speaker"] == "174"
    assert dev[1]["duration"] == pytest.approx(1.25)
    assert {r["speaker"] for r in read_manifest(written["train"])} == {"19", "26"}
    assert read_splits(out / "asr", Splits()) == Splits("dev", ("test-clean", "test-other"))
    assert check_path(out).ok
    # an explicit mapping: two parts for training, one eval split
    mapped = prepare_librispeech(
        src,
        tmp_path / "mapped",
        parts={"train": ["train-clean-100", "test-other"], "dev": ["dev-clean"],
               "test": ["test-clean"]},
    )  # fmt: skip
    assert len(read_manifest(mapped["train"])) == 6
    assert read_splits(tmp_path / "mapped" / "asr", Splits()) == Splits("dev", ("test",))


def test_librispeech_errors(tmp_path):
    src = make_librispeech(tmp_path)
    with pytest.raises(ImportError_, match="no part for the train and an eval split"):
        prepare_librispeech(src / "dev-clean", tmp_path / "one")
    with pytest.raises(ImportError_, match="part 'dev-clean' is mapped to two splits"):
        prepare_librispeech(
            src,
            tmp_path / "o",
            parts={"train": ["dev-clean"], "dev": ["dev-clean"], "test": ["test-clean"]},
        )
    with pytest.raises(ImportError_, match="no LibriSpeech part 'train-other-500'"):
        prepare_librispeech(
            src,
            tmp_path / "o",
            parts={"train": ["train-other-500"], "dev": ["dev-clean"], "test": ["test-clean"]},
        )
    trans = src / "dev-clean/84/121123/84-121123.trans.txt"
    trans.write_text("84-121123-0000 HELLO\n84-121123-0001\n")
    with pytest.raises(ManifestError) as e:
        prepare_librispeech(src, tmp_path / "out")
    assert str(e.value).startswith(f"{trans}:2: ")
    assert "<speaker>-<chapter>-<utterance> TRANSCRIPT" in str(e.value)
    trans.write_text("84-121123-0000 HELLO\n84-121123-0009 MISSING AUDIO\n")
    with pytest.raises(ManifestError, match=r":2: no audio 84-121123-0009\.flac"):
        prepare_librispeech(src, tmp_path / "out")
    trans.write_text("85-121123-0000 HELLO\n")
    with pytest.raises(ManifestError, match=r":1: utterance 85-121123-0000 is not in speaker 84"):
        prepare_librispeech(src, tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImportError_, match="no LibriSpeech part found"):
        prepare_librispeech(tmp_path / "empty", tmp_path / "o2")


def test_importers_never_replace_files_without_force(tmp_path):
    src = make_librispeech(tmp_path)
    out = tmp_path / "out"
    written = prepare_librispeech(src, out)
    written["dev"].write_text("my edits\n")
    with pytest.raises(LayoutError, match=r"train_manifest\.json exists; pass --force"):
        prepare_librispeech(src, out)
    assert written["dev"].read_text() == "my edits\n"
    assert not any(p.name.startswith(".") for p in (out / "asr").iterdir())
    prepare_librispeech(src, out, force=True)
    assert len(read_manifest(written["dev"])) == 5


# --- VoxCeleb -----------------------------------------------------------------------------------
def test_voxceleb(tmp_path):
    src = make_voxceleb(tmp_path)
    out = tmp_path / "out"
    written = prepare_voxceleb(src, out)
    assert written["train"] == manifest_path(out, "sv", "train")
    assert written["test_trials"] == trials_path(out, "sv", "test")
    train = read_manifest(written["train"])
    test = read_manifest(written["test"])
    dev = read_manifest(written["dev"])
    assert {r["label"] for r in test} == {"id10003", "id10004"} and len(test) == 7
    trials = read_trials(written["test_trials"])
    assert len(trials) == 4 and trials[0].enroll == "id10003/aaaaaaaaaaa/00001.wav"
    # dev: 2 held-out training speakers (5% of 6, at least 2), none in train or test
    train_spk, dev_spk = {r["label"] for r in train}, {r["label"] for r in dev}
    assert len(dev_spk) == 2 and len(train_spk) == 4
    assert not dev_spk & train_spk and not (dev_spk | train_spk) & {"id10003", "id10004"}
    assert len(train) == 16
    dev_trials = read_trials(written["dev_trials"])
    assert {t.label for t in dev_trials} == {0, 1}
    assert {t.enroll.split("/")[0] for t in dev_trials} <= dev_spk
    assert read_splits(out / "sv", Splits()) == Splits("dev", ("test",))
    report = check_path(out)
    assert report.ok and report.trials == 4 + len(dev_trials)
    # the same seed gives the same dev split; another seed may not
    again = prepare_voxceleb(src, tmp_path / "again")
    assert read_trials(again["dev_trials"]) == dev_trials
    three = prepare_voxceleb(src, tmp_path / "three", dev_speakers=3)
    assert len({r["label"] for r in read_manifest(three["dev"])}) == 3
    with pytest.raises(ImportError_, match="cannot hold out 5 for the dev split"):
        prepare_voxceleb(src, tmp_path / "five", dev_speakers=5)


def test_voxceleb_explicit_lists_and_errors(tmp_path):
    src = make_voxceleb(tmp_path)
    extra = tmp_path / "lists" / "Vox1 hard.txt"
    extra.parent.mkdir()
    extra.write_text("1 id10001/aaaaaaaaaaa/00001.wav id10001/aaaaaaaaaaa/00002.wav\n")
    written = prepare_voxceleb(src, tmp_path / "out", trials=[src / "veri_test2.txt", extra])
    assert {"test", "Vox1_hard", "test_trials", "Vox1_hard_trials", "train", "dev"} <= set(written)
    assert read_splits(tmp_path / "out" / "sv", Splits()).eval == ("test", "Vox1_hard")
    assert "id10001" not in {r["label"] for r in read_manifest(written["train"])}
    extra.write_text("1 id10001/aaaaaaaaaaa/00001.wav id10001/zzz/00002.wav\n")
    with pytest.raises(ManifestError) as e:
        prepare_voxceleb(src, tmp_path / "out2", trials=[extra])
    assert str(e.value).startswith(f"{extra}:1: names id10001/zzz/00002.wav")
    extra.write_text("yes id10001/aaaaaaaaaaa/00001.wav id10001/aaaaaaaaaaa/00002.wav\n")
    with pytest.raises(ManifestError, match=r":1: label 'yes'"):
        prepare_voxceleb(src, tmp_path / "out3", trials=[extra])
    with pytest.raises(ImportError_, match="no VoxCeleb audio"):
        prepare_voxceleb(extra.parent, tmp_path / "out4")
    (src / "veri_test2.txt").unlink()
    with pytest.raises(ImportError_, match="no trial list found"):
        prepare_voxceleb(src, tmp_path / "out5")


def test_voxceleb_on_the_embedded_corpus(tmp_path, tmp_path_factory):
    """The embedded SV data is in VoxCeleb layout: the importer reads it back."""
    corpus = tiny_corpus(tmp_path_factory)
    written = prepare_voxceleb(
        corpus / "sv", tmp_path / "out", trials=[corpus / "sv" / "test_trials.txt"]
    )
    assert read_trials(written["test_trials"]) == read_trials(corpus / "sv" / "test_trials.txt")
    ours = {r["label"] for r in read_manifest(corpus / "sv" / "test_manifest.json")}
    assert {r["label"] for r in read_manifest(written["test"])} == ours


# --- SLURP --------------------------------------------------------------------------------------
def test_slurp(tmp_path):
    src = make_slurp(tmp_path)
    written = prepare_slurp(src, tmp_path / "out")
    assert sorted(written) == ["dev", "splits", "test", "train"]
    assert written["dev"] == manifest_path(tmp_path / "out", "slu", "dev")
    dev = read_manifest(written["dev"])
    assert len(dev) == 4  # 2 records x 2 recordings
    assert dev[0]["label"] == "alarm_set" and dev[0]["text"] == "wake me up at nine am please"
    assert dev[0]["entities"] == [{"type": "time", "filler": "nine am"}]
    assert dev[2]["scenario"] == "weather" and dev[2]["action"] == "query"
    assert len(read_slurp(tmp_path / "out" / "slu" / "dev.jsonl")) == 2
    assert check_path(tmp_path / "out").ok


def test_slurp_errors_and_missing_audio(tmp_path):
    src = make_slurp(tmp_path)
    (src / "audio" / "slurp_real" / "audio-1051.flac").unlink()
    test_jsonl = src / "dataset" / "slurp" / "test.jsonl"
    with pytest.raises(ManifestError) as e:
        prepare_slurp(src, tmp_path / "out")
    assert str(e.value).startswith(f"{test_jsonl}:1: recording audio-1051.flac not found")
    written = prepare_slurp(src, tmp_path / "out", skip_missing=True)
    assert len(read_manifest(written["test"])) == 3
    with pytest.raises(LayoutError, match="exists"):
        prepare_slurp(src, tmp_path / "out", skip_missing=True)
    lines = test_jsonl.read_text().splitlines()
    bad = json.loads(lines[1])
    bad["entities"] = [{"span": [40], "type": "place_name"}]
    test_jsonl.write_text(lines[0] + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ManifestError, match=r"test\.jsonl:2: entity 0 \(place_name\) spans"):
        prepare_slurp(src, tmp_path / "out", skip_missing=True, force=True)
    with pytest.raises(ImportError_, match="no SLURP jsonl"):
        prepare_slurp(src / "audio", tmp_path / "out")


def test_slurp_on_the_embedded_corpus(tmp_path, tmp_path_factory):
    corpus = tiny_corpus(tmp_path_factory)
    written = prepare_slurp(corpus / "slu", tmp_path / "out")
    ours = read_manifest(corpus / "slu" / "test_manifest.json")
    theirs = read_manifest(written["test"])
    assert [r["audio_filepath"] for r in theirs] == [r["audio_filepath"] for r in ours]
    assert [r["entities"] for r in theirs] == [r["entities"] for r in ours]


# --- RTTM folders -------------------------------------------------------------------------------
def test_rttm_folder(tmp_path):
    src = make_rttm_folder(tmp_path)
    manifest = prepare_rttm(src, tmp_path / "out", split="dev")
    recs = read_manifest(manifest)
    assert manifest == manifest_path(tmp_path / "out", "diar", "dev") and len(recs) == 2
    a, b = recs
    assert a["num_speakers"] == 2 and a["duration"] == 6.0 and a["offset"] == 0.0
    assert [s.speaker for s in read_rttm(a["rttm_filepath"])] == ["alice", "bob"]
    assert a["rttm_filepath"].startswith(str(split_dir(tmp_path / "out", "diar", "dev")))
    assert read_uem(a["uem_filepath"])[0].offset == 6.0
    assert b["num_speakers"] == 1 and "uem_filepath" not in b
    assert check_path(tmp_path / "out").ok


def test_rttm_folder_errors(tmp_path):
    src = make_rttm_folder(tmp_path)
    rttm = src / "ref" / "all.rttm"
    rttm.write_text(rttm.read_text() + "SPEAKER meetC 1 0.0 1.0 <NA> <NA> dan <NA> <NA>\n")
    with pytest.raises(ManifestError) as e:
        prepare_rttm(src, tmp_path / "out")
    assert str(e.value).startswith(f"{rttm}:5: file id 'meetC' has no recording")
    rttm.write_text("SPEAKER meetA 1 0.0 1.0 <NA> <NA> dan <NA> <NA>\nSPEAKER meetB 1 x\n")
    with pytest.raises(ManifestError, match=r"all\.rttm:2: 4 fields, expected 10"):
        prepare_rttm(src, tmp_path / "out")
    rttm.write_text("SPEAKER meetA 1 0.0 1.0 <NA> <NA> dan <NA> <NA>\n")
    with pytest.raises(ImportError_, match="without RTTM segments: meetB"):
        prepare_rttm(src, tmp_path / "out")
    write_wav(src / "more" / "meetA.wav", 1.0)
    with pytest.raises(ImportError_, match="two recordings named meetA"):
        prepare_rttm(src, tmp_path / "out")


def test_prepare_cli(tmp_path):
    runner = CliRunner()
    src = make_rttm_folder(tmp_path)
    result = runner.invoke(data, ["prepare", "rttm", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "test_manifest.json" in result.output
    lib = make_librispeech(tmp_path)
    result = runner.invoke(data, ["prepare", "librispeech", str(lib), "--out", str(tmp_path / "l")])
    assert result.exit_code == 0 and "test-clean" in result.output
    result = runner.invoke(
        data,
        ["prepare", "librispeech", str(lib), "--out", str(tmp_path / "l2"),
         "--part", "train=train-clean-100,test-other", "--part", "dev=dev-clean",
         "--part", "test=test-clean"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert len(read_manifest(tmp_path / "l2" / "asr" / "train_manifest.json")) == 6
    result = runner.invoke(
        data, ["prepare", "librispeech", str(lib), "--out", str(tmp_path / "l3"), "--part", "x"]
    )
    assert result.exit_code == 2 and "expected SPLIT=PART" in result.output
    vox = make_voxceleb(tmp_path)
    result = runner.invoke(data, ["prepare", "voxceleb", str(vox), "--out", str(tmp_path / "v")])
    assert result.exit_code == 0 and "test_trials" in result.output
    slurp = make_slurp(tmp_path)
    result = runner.invoke(
        data,
        [
            "prepare",
            "slurp",
            str(slurp),
            "--out",
            str(tmp_path / "s"),
            "--audio-dir",
            str(slurp / "audio" / "slurp_real"),
        ],
    )
    assert result.exit_code == 0 and "dev" in result.output
    (src / "ref" / "all.rttm").write_text("SPEAKER meetA 1 zero 1.0 <NA> <NA> a <NA> <NA>\n")
    result = runner.invoke(
        data, ["prepare", "rttm", str(src), "--out", str(tmp_path / "o"), "--force"]
    )
    assert result.exit_code == 1 and "all.rttm:1: onset is 'zero'" in result.output
    result = runner.invoke(data, ["prepare", "rttm", str(src), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "test_manifest.json exists; pass --force" in result.output
