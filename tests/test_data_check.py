"""``nestbench data check``: each kind of problem is found, named with its file and line, and
makes the command exit non-zero."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from nestbench.data.check import check_path
from nestbench.data.cli import data
from nestbench.data.manifest import write_manifest
from tests.data_helpers import tiny_corpus, write_wav


def _manifest(path: Path, records: list[dict]) -> Path:
    return write_manifest(path, records)


def _messages(report) -> list[str]:
    return [str(p) for p in report.errors]


def test_clean_manifest_passes(tmp_path):
    a = write_wav(tmp_path / "a.wav", 1.0)
    m = _manifest(tmp_path / "m.json", [{"audio_filepath": str(a), "duration": 1.0}])
    report = check_path(m)
    assert report.ok and report.records == 1 and report.audio_files == 1
    result = CliRunner().invoke(data, ["check", str(m)])
    assert result.exit_code == 0 and "0 error(s)" in result.output


def test_audio_problems(tmp_path):
    a = write_wav(tmp_path / "a.wav", 1.0)
    b = write_wav(tmp_path / "b.wav", 1.0, sr=8000)
    c = write_wav(tmp_path / "c.wav", 1.0, channels=2)
    bad = tmp_path / "d.wav"
    bad.write_bytes(b"RIFF not really a wav file")
    m = _manifest(
        tmp_path / "m.json",
        [
            {"audio_filepath": str(a), "duration": 1.0},
            {"audio_filepath": str(tmp_path / "gone.wav"), "duration": 1.0},
            {"audio_filepath": str(b), "duration": 1.0},
            {"audio_filepath": str(c), "duration": 1.0},
            {"audio_filepath": str(bad), "duration": 1.0},
            {"audio_filepath": str(a), "duration": 1.5},
            {"audio_filepath": str(a), "duration": 1.0},
            {"audio_filepath": str(a), "offset": 0.5, "duration": 0.8},
            {"audio_filepath": str(a), "offset": 0.5, "duration": 0.5},
        ],
    )
    errors = _messages(check_path(m))
    expected = [
        (2, "missing audio file"),
        (3, "sample rate 8000 Hz, expected 16000"),
        (4, "2 channels, expected mono"),
        (5, "unreadable audio file"),
        (6, "duration 1.500 s, but the audio has 1.000 s"),
        (6, "duplicate of line 1"),  # the same whole file
        (7, "duplicate of line 1"),
        (8, "segment 0.500+0.800 s ends past the end of the audio"),
    ]
    for line, text in expected:
        assert any(e.startswith(f"ERROR {m}:{line}: ") and text in e for e in errors), (
            line,
            errors,
        )
    assert len(errors) == len(expected)
    result = CliRunner().invoke(data, ["check", str(m)])
    assert result.exit_code == 1 and "8 error(s)" in result.output


def test_malformed_manifest_lines_are_all_reported(tmp_path):
    a = write_wav(tmp_path / "a.wav", 1.0)
    m = tmp_path / "m.json"
    m.write_text(
        json.dumps({"audio_filepath": "a.wav", "duration": 1.0})
        + "\n"
        + '{"audio_filepath": "a.wav"\n'
        + json.dumps({"audio_filepath": str(a)})
        + "\n"
    )
    errors = _messages(check_path(m))
    assert len(errors) == 2
    assert errors[0].startswith(f"ERROR {m}:2: not valid JSON")
    assert errors[1].startswith(f'ERROR {m}:3: missing field "duration"')


def test_rttm_and_uem_problems(tmp_path):
    a = write_wav(tmp_path / "sess.wav", 5.0)
    rttm = tmp_path / "sess.rttm"
    rttm.write_text(
        "SPEAKER sess 1 0.0 2.0 <NA> <NA> x <NA> <NA>\n"
        "SPEAKER sess 1 3.5 2.5 <NA> <NA> y <NA> <NA>\n"
    )
    uem = tmp_path / "sess.uem"
    uem.write_text("sess 1 0.0 7.0\n")
    m = _manifest(
        tmp_path / "m.json",
        [
            {
                "audio_filepath": str(a),
                "offset": 0.0,
                "duration": 5.0,
                "rttm_filepath": str(rttm),
                "uem_filepath": str(uem),
                "num_speakers": 3,
            }
        ],
    )
    errors = _messages(check_path(m))
    assert any(
        e.startswith(
            f"ERROR {rttm}: segment of y at 3.500+2.500 s ends at 6.000 s, "
            "past the end of the audio"
        )
        for e in errors
    ), errors
    assert any(str(uem) in e and "past the end" in e for e in errors)
    assert any("num_speakers is 3 but the RTTM has 2" in e for e in errors)
    rttm.write_text("SPEAKER sess 1 0.0\n")
    errors = _messages(check_path(m))
    assert any(e.startswith(f"ERROR {rttm}:1: 4 fields, expected 10") for e in errors)
    rttm.unlink()
    assert any("missing RTTM file" in e for e in _messages(check_path(m)))


def test_trials_naming_unknown_files(tmp_path):
    a = write_wav(tmp_path / "wav" / "id1" / "v" / "00001.wav", 1.0)
    b = write_wav(tmp_path / "wav" / "id2" / "v" / "00001.wav", 1.0)
    _manifest(
        tmp_path / "test_manifest.json",
        [
            {"audio_filepath": str(a), "duration": 1.0, "label": "id1"},
            {"audio_filepath": str(b), "duration": 1.0, "label": "id2"},
        ],
    )
    trials = tmp_path / "test_trials.txt"
    trials.write_text(
        "0 id1/v/00001.wav id2/v/00001.wav\n1 id1/v/00001.wav id1/v/00009.wav\n1 id1/v/00001.wav\n"
    )
    report = check_path(tmp_path)
    errors = _messages(report)
    assert report.trial_lists == 1 and report.trials == 2
    assert errors[0].startswith(f"ERROR {trials}:2: names id1/v/00009.wav")
    assert errors[1].startswith(f"ERROR {trials}:3: 2 fields, expected 3")
    assert len(errors) == 2
    assert not check_path(trials).ok  # a trial list alone is checked against its folder


def test_cross_manifest_duplicates_warn(tmp_path):
    a = write_wav(tmp_path / "a.wav", 1.0)
    _manifest(tmp_path / "train.json", [{"audio_filepath": str(a), "duration": 1.0}])
    _manifest(tmp_path / "test.json", [{"audio_filepath": str(a), "duration": 1.0}])
    report = check_path(tmp_path)
    assert report.ok and len(report.warnings) == 1
    assert "also in" in str(report.warnings[0])


def test_corrupted_corpus_fails(tmp_path, tmp_path_factory):
    corpus = tmp_path / "c"
    shutil.copytree(tiny_corpus(tmp_path_factory), corpus)
    wav = sorted((corpus / "asr" / "test").rglob("*.wav"))[0]
    wav.write_bytes(wav.read_bytes()[:44])  # header only: no samples
    rttm = sorted((corpus / "diar" / "dev" / "rttm").glob("*.rttm"))[0]
    rttm.write_text(
        rttm.read_text() + "SPEAKER dev-session000 1 90.0 5.0 <NA> <NA> id10008 <NA> <NA>\n"
    )
    slurp = corpus / "slu" / "dataset" / "slurp" / "test.jsonl"
    rec = json.loads(slurp.read_text().splitlines()[0])
    rec["entities"] = [{"span": [0], "type": "time"}]
    slurp.write_text(json.dumps(rec) + "\n")
    result = CliRunner().invoke(data, ["check", str(corpus)])
    assert result.exit_code == 1
    out = result.output
    assert "asr/test_manifest.json:1: " in out and "empty" in out
    assert "past the end of the audio" in out
    assert "WARNING" in out and "test.jsonl:1: entities from spans" in out


def test_check_rejects_unknown_file(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello\n")
    result = CliRunner().invoke(data, ["check", str(p)])
    assert result.exit_code == 1 and "not a manifest" in result.output
    with pytest.raises(FileNotFoundError):
        check_path(tmp_path / "nothing")


def _two_speakers(tmp_path):
    a = write_wav(tmp_path / "wav" / "id1" / "v" / "00001.wav", 1.0)
    b = write_wav(tmp_path / "wav" / "id2" / "v" / "00001.wav", 1.0)
    records = [
        {"audio_filepath": str(a), "duration": 1.0, "label": "id1"},
        {"audio_filepath": str(b), "duration": 1.0, "label": "id2"},
    ]
    return a, records


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ("", "no trials (an empty trial list)"),
        ("1 id1/v/00001.wav id1/v/00001.wav\n", "only target (1) trials"),
        ("0 id1/v/00001.wav id2/v/00001.wav\n", "only non-target (0) trials"),
    ],
)
def test_trial_lists_without_both_classes(tmp_path, lines, message):
    _, records = _two_speakers(tmp_path)
    _manifest(tmp_path / "test_manifest.json", records)
    trials = tmp_path / "test_trials.txt"
    trials.write_text(lines)
    errors = _messages(check_path(tmp_path))
    assert len(errors) == 1 and errors[0].startswith(f"ERROR {trials}: {message}")


def test_the_same_audio_under_two_speakers(tmp_path):
    a, records = _two_speakers(tmp_path)
    records.append({"audio_filepath": str(a), "duration": 1.0, "label": "id2"})
    m = _manifest(tmp_path / "train.json", records)
    errors = _messages(check_path(m))
    assert len(errors) == 1
    assert errors[0].startswith(f"ERROR {m}:3: duplicate of line 1")
    assert "labelled 'id1' there and 'id2' here" in errors[0]
