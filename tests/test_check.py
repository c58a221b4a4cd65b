"""The encoder validator accepts a correct encoder and names the broken part of broken ones."""

import pytest
from click.testing import CliRunner

from nestbench.cli import main
from nestbench.encoders.check import check_encoder
from tests import toy_encoders as toys


def _by_name(results):
    return {r.name: r for r in results}


def test_correct_encoder_passes_every_check():
    results = check_encoder(toys.FramesEncoder())
    assert all(r.ok for r in results), results
    assert set(_by_name(results)) == {
        "attributes",
        "shapes and lengths",
        "finite values",
        "determinism (eval)",
        "padding invariance",
    }


@pytest.mark.parametrize(
    ("encoder", "failing", "reason"),
    [
        (toys.BatchNormalisedEncoder, "padding invariance", "max relative difference"),
        (toys.DropoutEncoder, "determinism (eval)", "two identical calls differ"),
        (toys.WrongLayerCountEncoder, "shapes and lengths", "expected num_layers+1 = 4"),
        (toys.WrongFrameShiftEncoder, "shapes and lengths", "frame_shift 320 implies"),
    ],
)
def test_broken_encoders_fail_the_right_check(encoder, failing, reason):
    results = _by_name(check_encoder(encoder()))
    assert not results[failing].ok
    assert reason in results[failing].detail


def test_cli_check_exit_codes():
    runner = CliRunner()
    ok = runner.invoke(main, ["encoders", "check", "tests.toy_encoders:FramesEncoder"])
    assert ok.exit_code == 0, ok.output
    assert "5/5 checks passed" in ok.output
    bad = runner.invoke(main, ["encoders", "check", "tests.toy_encoders:DropoutEncoder"])
    assert bad.exit_code == 1
    assert "FAIL  determinism (eval)" in bad.output and "failed: determinism (eval)" in bad.output
    unknown = runner.invoke(main, ["encoders", "check", "no-such-encoder"])
    assert unknown.exit_code != 0 and "unknown encoder 'no-such-encoder'" in unknown.output


def test_cli_list_shows_builtins():
    out = CliRunner().invoke(main, ["encoders", "list"]).output
    for name in ("nest-large", "fbank", "wav2vec2-base", "hubert-base", "wavlm-base"):
        assert name in out
