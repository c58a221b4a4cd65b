"""Readers and writers of manifests, RTTM, UEM, VoxCeleb trials and SLURP jsonl, and their
errors on malformed lines (file, line number, what was expected)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nestbench.data.manifest import ManifestError, read_manifest, write_manifest
from nestbench.data.rttm import (
    Segment,
    UEMRegion,
    overlap_ratio,
    read_rttm,
    read_uem,
    speech_and_overlap,
    write_rttm,
    write_uem,
)
from nestbench.data.slu_templates import tag
from nestbench.data.slurp import (
    annotation_problems,
    make_record,
    parse_annotation,
    read_slurp,
    record_entities,
    write_slurp,
)
from nestbench.data.trials import Trial, TrialResolver, read_trials, write_trials


def _raises_at(path: Path, line: int, *words: str):
    """Context manager: ManifestError naming ``path:line`` and containing ``words``."""

    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(ManifestError)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.cm.__exit__(*exc)
            msg = str(self.info.value)
            assert msg.startswith(f"{path}:{line}: "), msg
            for w in words:
                assert w in msg, (w, msg)
            assert self.info.value.line == line
            return handled

    return _Ctx()


# --- manifests ----------------------------------------------------------------------------------
def test_manifest_round_trip_relative_paths(tmp_path):
    audio = tmp_path / "audio" / "a.wav"
    rttm = tmp_path / "ref" / "a.rttm"
    recs = [
        {
            "text": "hi",
            "duration": 1.5,
            "audio_filepath": str(audio),
            "label": "x",
            "extra": [1, 2],
        },
        {
            "audio_filepath": str(audio),
            "offset": 0.0,
            "duration": 2.0,
            "rttm_filepath": str(rttm),
            "uem_filepath": None,
            "num_speakers": 2,
        },
    ]
    path = write_manifest(tmp_path / "m" / "train.json", recs)
    lines = path.read_text().splitlines()
    first = json.loads(lines[0])
    assert list(first) == ["audio_filepath", "duration", "text", "label", "extra"]
    assert first["audio_filepath"] == "../audio/a.wav"
    assert json.loads(lines[1])["rttm_filepath"] == "../ref/a.rttm"
    back = read_manifest(path)
    assert back[0]["audio_filepath"] == str(audio)
    assert back[1]["rttm_filepath"] == str(rttm)
    assert back[0]["extra"] == [1, 2]
    assert read_manifest(path, resolve=False)[0]["audio_filepath"] == "../audio/a.wav"
    assert not list(path.parent.glob(".*tmp"))  # atomic write left no temporary file


def test_manifest_accepts_absolute_paths_and_blank_lines(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"audio_filepath": "/data/x.wav", "duration": 1}) + "\n\n")
    assert read_manifest(path) == [{"audio_filepath": "/data/x.wav", "duration": 1}]


@pytest.mark.parametrize(
    "line, words",
    [
        ('{"audio_filepath": "a.wav", "duration": 1', ["not valid JSON", "one JSON object"]),
        ('["a.wav", 1]', ["JSON list", "expected a JSON object"]),
        ('{"duration": 1}', ['missing field "audio_filepath"']),
        ('{"audio_filepath": "a.wav"}', ['missing field "duration"', "number >= 0"]),
        ('{"audio_filepath": "a.wav", "duration": "long"}', ['"duration" is', "number >= 0"]),
        ('{"audio_filepath": "a.wav", "duration": 1, "offset": -2}', ['"offset"']),
        ('{"audio_filepath": "a.wav", "duration": 1, "text": 5}', ['"text"', "a string"]),
        ('{"audio_filepath": "a.wav", "duration": 1, "num_speakers": 1.5}', ["num_speakers"]),
        ('{"audio_filepath": 3, "duration": 1}', ["non-empty path string"]),
    ],
)
def test_manifest_malformed_line(tmp_path, line, words):
    path = tmp_path / "bad.json"
    path.write_text('{"audio_filepath": "ok.wav", "duration": 1.0}\n\n' + line + "\n")
    with _raises_at(path, 3, *words):
        read_manifest(path)


def test_write_manifest_rejects_bad_record(tmp_path):
    with pytest.raises(ManifestError, match="duration"):
        write_manifest(tmp_path / "m.json", [{"audio_filepath": "a.wav"}])
    assert not (tmp_path / "m.json").exists()


# --- RTTM / UEM ---------------------------------------------------------------------------------
def test_rttm_round_trip_and_skips(tmp_path):
    segs = [Segment("f1", 2.5, 1.25, "bob"), Segment("f1", 0.0, 3.0, "alice")]
    path = tmp_path / "a.rttm"
    write_rttm(path, segs)
    assert path.read_text().splitlines()[0] == (
        "SPEAKER f1 1 0.000 3.000 <NA> <NA> alice <NA> <NA>"
    )
    path.write_text(
        ";; comment\nSPKR-INFO f1 1 <NA> <NA> <NA> unknown alice <NA> <NA>\n\n" + path.read_text()
    )
    back = read_rttm(path)
    assert [(s.speaker, s.onset, s.duration) for s in back] == [
        ("alice", 0.0, 3.0),
        ("bob", 2.5, 1.25),
    ]


@pytest.mark.parametrize(
    "line, words",
    [
        ("SPEAKER f1 1 0.0 <NA> <NA> spk", ["7 fields", "expected 10", "SPEAKER <file>"]),
        ("SPEAKER f1 1 abc 1.0 <NA> <NA> spk <NA> <NA>", ["onset is 'abc'", "seconds"]),
        ("SPEAKER f1 1 1.0 -1 <NA> <NA> spk <NA> <NA>", ["duration", ">= 0"]),
        ("SPEEKER f1 1 1.0 1.0 <NA> <NA> spk <NA> <NA>", ["line type 'SPEEKER'", "SPEAKER"]),
    ],
)
def test_rttm_malformed_line(tmp_path, line, words):
    path = tmp_path / "bad.rttm"
    path.write_text("SPEAKER f1 1 0.0 1.0 <NA> <NA> a <NA> <NA>\n" + line + "\n")
    with _raises_at(path, 2, *words):
        read_rttm(path)


def test_uem_round_trip_and_errors(tmp_path):
    path = tmp_path / "a.uem"
    write_uem(path, [UEMRegion("f1", 0.0, 12.5)])
    assert path.read_text() == "f1 1 0.000 12.500\n"
    assert read_uem(path) == [UEMRegion("f1", 0.0, 12.5, "1")]
    path.write_text("f1 1 0.0 12.5\nf2 1 0.0\n")
    with _raises_at(path, 2, "3 fields", "expected 4", "<file> <channel> <onset> <offset>"):
        read_uem(path)
    path.write_text("f1 1 5.0 2.0\n")
    with _raises_at(path, 1, "before onset"):
        read_uem(path)


def test_overlap_ratio():
    segs = [
        Segment("f", 0, 4, "a"),
        Segment("f", 3, 4, "b"),
        Segment("f", 10, 2, "a"),
        Segment("f", 10.5, 1, "a"),
    ]  # the speaker's own segments merge
    speech, overlap = speech_and_overlap(segs)
    assert speech == pytest.approx(9.0) and overlap == pytest.approx(1.0)
    assert overlap_ratio(segs) == pytest.approx(1 / 9)
    assert overlap_ratio([]) == 0.0


# --- trials -------------------------------------------------------------------------------------
def test_trials_round_trip_and_resolver(tmp_path):
    trials = [Trial(1, "id1/v/1.wav", "id1/w/2.wav"), Trial(0, "id1/v/1.wav", "id2/v/1.wav")]
    path = tmp_path / "t.txt"
    write_trials(path, trials)
    assert path.read_text().splitlines()[0] == "1 id1/v/1.wav id1/w/2.wav"
    assert read_trials(path) == trials
    resolver = TrialResolver(["/c/wav/id1/v/1.wav", "/c/wav/id1/w/2.wav", "/d/id1/v/1.wav"])
    assert resolver.resolve("id1/w/2.wav") == ["/c/wav/id1/w/2.wav"]
    assert len(resolver.resolve("id1/v/1.wav")) == 2
    assert resolver.resolve("id9/v/1.wav") == []


@pytest.mark.parametrize(
    "line, words",
    [
        ("1 id1/a.wav", ["2 fields", "expected 3", "<label 0|1> <enroll path> <test path>"]),
        ("target id1/a.wav id1/b.wav", ["label 'target'", "1 (target) or 0 (non-target)"]),
        ("2 id1/a.wav id1/b.wav", ["label '2'"]),
    ],
)
def test_trials_malformed_line(tmp_path, line, words):
    path = tmp_path / "t.txt"
    path.write_text("1 a b\n0 a c\n" + line + "\n")
    with _raises_at(path, 3, *words):
        read_trials(path)


# --- SLURP --------------------------------------------------------------------------------------
def _record(sid=1):
    return make_record(
        sid,
        "alarm",
        "set",
        ["wake me up at", ("time", "nine am")],
        [{"file": "a.flac", "wer": 0.0, "ent_wer": 0.0, "status": "correct"}],
        tag,
    )


def test_slurp_record_and_round_trip(tmp_path):
    rec = _record()
    assert rec["sentence"] == "wake me up at nine am"
    assert rec["sentence_annotation"] == "wake me up at [time : nine am]"
    assert rec["entities"] == [{"span": [4, 5], "type": "time"}]
    assert rec["tokens"][0] == {"surface": "wake", "id": 0, "lemma": "wake", "pos": "VB"}
    assert record_entities(rec) == [{"type": "time", "filler": "nine am"}]
    assert annotation_problems(rec) == []
    path = tmp_path / "devel.jsonl"
    write_slurp(path, [rec])
    assert list(json.loads(path.read_text())) == [
        "slurp_id",
        "sentence",
        "sentence_annotation",
        "intent",
        "action",
        "tokens",
        "scenario",
        "recordings",
        "entities",
    ]
    assert read_slurp(path) == [rec]


def test_parse_annotation():
    sentence, ents = parse_annotation(
        "siri what is one [currency_name : american dollar] in [currency_name :  japanese yen]"
    )
    assert sentence == "siri what is one american dollar in japanese yen"
    assert ents == [
        {"type": "currency_name", "filler": "american dollar"},
        {"type": "currency_name", "filler": "japanese yen"},
    ]
    with pytest.raises(ValueError, match="brackets"):
        parse_annotation("wake me [time nine am]")


def test_annotation_problems_found():
    rec = _record()
    rec["entities"] = [{"span": [3, 4], "type": "time"}]
    assert any("differ from the annotation" in p for p in annotation_problems(rec))


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda r: r.pop("slurp_id"), ['"slurp_id"', "an integer"]),
        (lambda r: r.update(intent="alarm_query"), ['"intent"', "<scenario>_<action>"]),
        (lambda r: r.update(entities=[{"span": [9], "type": "time"}]), ["token ids [9]"]),
        (lambda r: r.update(entities=[{"type": "time"}]), ["entity 0", '{"span"']),
        (lambda r: r.update(tokens=[{"surface": "a"}]), ["token 0", '"id": <integer>']),
        (lambda r: r.update(recordings=["a.flac"]), ['"recordings"', '{"file"']),
    ],
)
def test_slurp_malformed_line(tmp_path, change, words):
    bad = _record(2)
    change(bad)
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps(_record(1)) + "\n" + json.dumps(bad) + "\n")
    with _raises_at(path, 2, *words):
        read_slurp(path)


def test_slurp_not_json(tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_text("{nope\n")
    with _raises_at(path, 1, "not valid JSON", "SLURP record"):
        read_slurp(path)
