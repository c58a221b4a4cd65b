"""Errors a user can cause end in one ``Error: ...`` line naming the file, line or key, with a
non-zero exit and no traceback; ``--debug`` (or NESTBENCH_DEBUG=1) shows the traceback."""

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from nestbench.cli import main
from nestbench.config import ConfigError
from tests.sv_helpers import SMALL_SV, make_sv_folder


def _run_sv(tmp_path, data, *extra):
    args = ["run", "--task", "sv", "--encoder", "tests.toy_encoders:FramesEncoder"]
    args += ["--data", str(data), "--out", str(tmp_path / "runs"), *SMALL_SV]
    args += [f"cache.root={tmp_path / 'cache'}", "trainer.max_epochs=1", *extra]
    return CliRunner().invoke(main, args)


def _one_error_line(result, *expected):
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


@pytest.fixture()
def sv_data(tmp_path):
    return make_sv_folder(tmp_path / "sv", train_speakers=3, eval_speakers=2, utts=2)


def test_bad_config_value(tmp_path, sv_data):
    _one_error_line(_run_sv(tmp_path, sv_data, "trainer.max_epochs=abc"), "trainer.max_epochs")


def test_manifest_line_that_is_not_json(tmp_path, sv_data):
    path = sv_data / "train.json"
    lines = path.read_text().splitlines()
    lines[1] = '{"audio_filepath": "x.wav", '
    path.write_text("\n".join(lines) + "\n")
    _one_error_line(_run_sv(tmp_path, sv_data), "train.json:2")


def test_manifest_record_without_a_needed_field(tmp_path, sv_data):
    path = sv_data / "dev.json"
    path.write_text(path.read_text().replace('"label": "spk03"', '"speaker": "spk03"', 1))
    _one_error_line(_run_sv(tmp_path, sv_data), "dev.json", "label")


def test_malformed_trial_line(tmp_path, sv_data):
    with open(sv_data / "test_trials.txt", "a") as f:
        f.write("yes spk03/u0.wav\n")
    _one_error_line(_run_sv(tmp_path, sv_data), "test_trials.txt:")


@pytest.mark.parametrize("bad", ["nan", "empty"])
def test_unusable_audio_names_the_file(tmp_path, sv_data, bad):
    wav = sorted((sv_data / "wav" / "train").rglob("*.wav"))[0]
    x = np.full(8000, np.nan, dtype=np.float32) if bad == "nan" else np.zeros(0, np.float32)
    sf.write(wav, x, 16000, subtype="FLOAT")
    _one_error_line(_run_sv(tmp_path, sv_data), wav.name)


def test_damaged_checkpoint(tmp_path):
    bad = tmp_path / "model.nemo"
    bad.write_bytes(b"not a tar file at all")
    _one_error_line(CliRunner().invoke(main, ["encoders", "check", str(bad)]), "model.nemo")


def test_debug_shows_the_traceback(tmp_path, sv_data, monkeypatch):
    result = CliRunner().invoke(main, ["--debug", "run", "--task", "sv", "trainer.max_epochs=abc"])
    assert result.exit_code == 1 and isinstance(result.exception, ConfigError)
    monkeypatch.setenv("NESTBENCH_DEBUG", "1")
    result = CliRunner().invoke(main, ["run", "--task", "sv", "trainer.max_epochs=abc"])
    assert isinstance(result.exception, ConfigError)


def test_truncated_audio_names_the_file(tmp_path, sv_data):
    """A wav cut short while the manifest still gives its full duration."""
    wav = sorted((sv_data / "wav" / "test").rglob("*.wav"))[0]
    x, sr = sf.read(wav, dtype="float32")
    sf.write(wav, x[:200], sr, subtype="PCM_16")
    line = _one_error_line(_run_sv(tmp_path, sv_data), wav.name, "the audio has 0.013 s")
    assert "the manifest says" in line


@pytest.mark.parametrize("cache", ["true", "false"])
def test_audio_too_short_for_the_encoder(tmp_path, sv_data, cache):
    """5 ms of audio (the manifest agreeing) give the encoder no frame at all."""
    wav = sorted((sv_data / "wav" / "train").rglob("*.wav"))[0]
    x, sr = sf.read(wav, dtype="float32")
    sf.write(wav, x[:80], sr, subtype="PCM_16")
    manifest = sv_data / "train.json"
    rel = wav.relative_to(sv_data).as_posix()
    lines = [
        line.replace(line[line.index('"duration"') :].split(",")[0], '"duration": 0.005')
        if rel in line
        else line
        for line in manifest.read_text().splitlines()
    ]
    manifest.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(
        main,
        [
            "run",
            "--task",
            "sv",
            "--encoder",
            "nest-embedded",
            "--data",
            str(sv_data),
            "--out",
            str(tmp_path / "runs"),
            *SMALL_SV,
            f"cache.root={tmp_path / 'cache'}",
            f"cache.enabled={cache}",
        ],
    )
    _one_error_line(result, wav.name, "no output frame")
