"""NEST without NeMo reproduces real NeMo outputs (fixtures made with NeMo 3.0.0 and 2.4.0)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from nestbench.audio import load_audio
from nestbench.encoders.checkpoint import read_checkpoint
from nestbench.encoders.nest import NestEncoder, NestModel, load_nest

TOL = 1e-4
FIXTURES = {"nemo_nest_tiny": "2.5", "nemo_nest_tiny_v24": "2.4"}


#: The NeMo reference fixtures, copied into the repository (tests/nemo_fixtures/README.md), so
#: every clone runs the parity tests.
FIXTURE_DIR = Path(__file__).resolve().parent / "nemo_fixtures"


@pytest.fixture(scope="module", params=sorted(FIXTURES))
def case(request):
    folder = FIXTURE_DIR / request.param
    expected = torch.load(folder / "expected.pt", map_location="cpu", weights_only=True)
    model = load_nest(folder / "model.nemo")
    return request.param, folder, expected, model


def max_valid_diff(a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor, time_dim: int) -> float:
    """Max |a - b| over the valid steps (time along ``time_dim``) of each batch row."""
    worst = 0.0
    for i, n in enumerate(lengths.tolist()):
        d = (a[i] - b[i]).abs().narrow(time_dim - 1, 0, n)
        worst = max(worst, d.max().item())
    return worst


def test_generation_from_nemo_version(case):
    name, _, _, model = case
    assert model.generation == FIXTURES[name]


def test_audio_files_are_the_signal(case):
    _, folder, expected, _ = case
    for i in range(2):
        wav = load_audio(folder / f"audio_{i}.wav")
        n = int(expected["signal_len"][i])
        assert wav.shape[0] == n
        torch.testing.assert_close(wav, expected["signal"][i, :n], atol=0, rtol=0)
        assert not expected["signal"][i, n:].any()


def test_mel_matches(case):
    _, _, expected, model = case
    mel, mel_len = model.preprocessor(expected["signal"], expected["signal_len"])
    assert torch.equal(mel_len, expected["mel_len"])
    assert mel.shape == expected["mel"].shape
    assert max_valid_diff(mel, expected["mel"], mel_len, time_dim=2) < TOL


def test_layers_and_encoded_match(case):
    _, _, expected, model = case
    with torch.no_grad():
        hidden, lengths = model(expected["signal"], expected["signal_len"])
    assert torch.equal(lengths, expected["encoded_len"])
    assert len(hidden) == len(expected["layers"]) + 1
    for mine, ref in zip(hidden[1:], expected["layers"], strict=True):
        assert mine.shape == ref.shape
        assert max_valid_diff(mine, ref, lengths, time_dim=1) < TOL
    encoded = hidden[-1].transpose(1, 2)  # NeMo layout [B, D, T']
    assert encoded.shape == expected["encoded"].shape
    assert max_valid_diff(encoded, expected["encoded"], lengths, time_dim=2) < TOL


def test_wrong_generation_does_not_match(case):
    name, folder, expected, _ = case
    other = "2.4" if FIXTURES[name] == "2.5" else "2.5"
    model = load_nest(folder / "model.nemo", generation=other)
    assert model.generation == other
    mel, mel_len = model.preprocessor(expected["signal"], expected["signal_len"])
    assert not torch.equal(mel_len, expected["mel_len"])
    with torch.no_grad():
        hidden, lengths = model(expected["signal"], expected["signal_len"])
    n = int(lengths.min())
    assert (hidden[-1][:, :n] - expected["layers"][-1][:, :n]).abs().max() > 1e-2


def test_state_dict_round_trip(case):
    _, folder, _, model = case
    ckpt = read_checkpoint(folder / "model.nemo")
    assert list(model.state_dict()) == list(ckpt.state_dict)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, ckpt.state_dict[key].to(value.dtype), atol=0, rtol=0)
    rebuilt = NestModel.from_config(model.to_nemo_config())
    assert list(rebuilt.state_dict()) == list(ckpt.state_dict)
    assert rebuilt.generation == model.generation


def test_nest_encoder_contract(case):
    name, folder, expected, _ = case
    enc = NestEncoder.from_checkpoint(folder / "model.nemo")
    assert (enc.frame_shift, enc.num_layers, enc.hidden_size, enc.sample_rate) == (
        1280,
        3,
        64,
        16000,
    )
    assert enc.generation == FIXTURES[name]
    with torch.no_grad():
        out = enc(expected["signal"], expected["signal_len"])
    assert torch.equal(out.lengths, expected["encoded_len"])
    assert len(out.hidden_states) == 4
    n0 = int(out.lengths[0])  # the longest utterance carries no padding: NeMo-exact
    assert (out.hidden_states[-1][0, :n0] - expected["layers"][-1][0, :n0]).abs().max() < TOL
    assert not out.hidden_states[-1][1, int(out.lengths[1]) :].any()


@pytest.mark.parametrize("generation", ["2.4", "2.5"])
def test_batch_invariance(generation):
    """Batched features equal NeMo's for each utterance alone (batch of one, no padding)."""
    path = FIXTURE_DIR / "nemo_nest_tiny" / "model.nemo"
    exact = load_nest(path, generation=generation)
    invariant = NestEncoder.from_checkpoint(path, generation=generation)
    torch.manual_seed(0)
    lens = torch.tensor([12000, 7777, 4321])
    wav = torch.randn(3, 12000) * 0.3 * (torch.arange(12000)[None] < lens[:, None])
    with torch.no_grad():
        batched = invariant(wav, lens)
        alone = [exact(wav[i : i + 1, : lens[i]], lens[i : i + 1]) for i in range(3)]
        padded_exact, _ = exact(wav, lens)
    for i, (hidden, lengths) in enumerate(alone):
        n = int(lengths[0])
        assert n == batched.lengths[i]
        for a, b in zip(batched.hidden_states, hidden, strict=True):
            assert (a[i, :n] - b[0, :n]).abs().max() < 1e-4
    if generation == "2.4":  # NeMo 2.4 batching itself is not padding invariant
        n = int(alone[2][1][0])
        assert (padded_exact[-1][2, :n] - alone[2][0][-1][0, :n]).abs().max() > 1e-3


def test_the_copy_in_the_repository_equals_the_shared_fixtures():
    """tests/nemo_fixtures/ is a byte-for-byte copy of ../shared/fixtures/ (where that exists:
    the project's own checkouts), so outside clones test against the same NeMo outputs."""
    env = os.environ.get("NESTBENCH_SHARED")
    shared = (Path(env) if env else Path(__file__).resolve().parents[2] / "shared") / "fixtures"
    if not shared.is_dir():
        pytest.skip(f"{shared} not found: nothing to compare the repository's copy with")
    ours = sorted(p.relative_to(FIXTURE_DIR) for p in FIXTURE_DIR.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(shared) for p in shared.rglob("*") if p.is_file())
    assert ours == theirs
    for rel in ours:
        assert (FIXTURE_DIR / rel).read_bytes() == (shared / rel).read_bytes(), rel
