"""Every registered encoder passes the contract validator (shapes, lengths, determinism,
padding invariance), and the fbank baseline is NeMo's own normalised log-mel."""

import pytest
import torch

from nestbench.encoders import available_encoders, load_encoder
from nestbench.encoders.check import check_encoder
from tests.test_nemo_fixtures import FIXTURE_DIR

BUILTIN = sorted(n for n, r in available_encoders().items() if r.source == "built-in")
SHORT = (0.7, 1.3, 2.05)


@pytest.mark.parametrize("spec", BUILTIN)
def test_registered_encoder_passes_every_check(spec):
    encoder = load_encoder(spec)
    results = check_encoder(encoder, durations=SHORT)
    failed = [f"{r.name}: {r.detail}" for r in results if not r.ok]
    assert not failed, failed
    assert len(results) == 5


def test_named_nest_sizes_are_reproducible():
    a, b = load_encoder("nest-small"), load_encoder("nest-small")
    assert a.identity() == b.identity()
    assert load_encoder("nest-small", seed=1).identity()["weights"] != a.identity()["weights"]


@pytest.mark.skipif(not (FIXTURE_DIR / "nemo_nest_tiny").is_dir(), reason=f"{FIXTURE_DIR} absent")
@pytest.mark.parametrize("fixture", ["nemo_nest_tiny", "nemo_nest_tiny_v24"])
def test_nemo_checkpoints_pass_every_check(fixture):
    encoder = load_encoder(str(FIXTURE_DIR / fixture / "model.nemo"))
    assert encoder.generation == ("2.5" if fixture == "nemo_nest_tiny" else "2.4")
    results = check_encoder(encoder, durations=SHORT)
    assert all(r.ok for r in results), results


@pytest.mark.skipif(not (FIXTURE_DIR / "nemo_nest_tiny").is_dir(), reason=f"{FIXTURE_DIR} absent")
def test_fbank_is_nemo_normalised_log_mel():
    expected = torch.load(FIXTURE_DIR / "nemo_nest_tiny" / "expected.pt", weights_only=True)
    out = load_encoder("fbank")(expected["signal"], expected["signal_len"])
    assert out.lengths.tolist() == expected["mel_len"].tolist()
    for b, n in enumerate(expected["mel_len"].tolist()):
        diff = (out.hidden_states[0][b, :n] - expected["mel"][b, :, :n].T).abs().max()
        assert diff < 1e-4
