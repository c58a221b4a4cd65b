"""torchaudio baselines: local weights files load strictly; bad files give clear errors."""

import pytest
import torch

from nestbench.encoders import load_encoder
from nestbench.encoders.checkpoint import CheckpointError


def test_weights_file_round_trip(tmp_path):
    torch.manual_seed(1)
    source = load_encoder("wavlm-base")
    path = tmp_path / "wavlm.pt"
    torch.save(source.model.state_dict(), path)
    torch.manual_seed(2)
    loaded = load_encoder("wavlm-base", weights=str(path))
    assert loaded.weights_path == str(path)
    assert loaded.identity()["weights"] == source.identity()["weights"]
    wav = torch.randn(1, 8000)
    a = source(wav, torch.tensor([8000])).hidden_states[-1]
    b = loaded(wav, torch.tensor([8000])).hidden_states[-1]
    torch.testing.assert_close(a, b)


def test_bad_weights_files(tmp_path):
    wrong = tmp_path / "hubert.pt"
    torch.save(load_encoder("hubert-base").model.state_dict(), wrong)
    with pytest.raises(
        CheckpointError,
        match=r"wav2vec2\.pt: .*1 missing keys .*layer_norm\.weight.*1 unexpected keys .*extra\.key",
    ):
        # HuBERT-base and wav2vec2-base share their layout; a truncated dict does not fit.
        state = torch.load(wrong, weights_only=True)
        state.pop("encoder.transformer.layer_norm.weight")
        state["extra.key"] = torch.zeros(1)
        torch.save(state, tmp_path / "wav2vec2.pt")
        load_encoder("wav2vec2-base", weights=str(tmp_path / "wav2vec2.pt"))
    with pytest.raises(CheckpointError, match="no such weights file"):
        load_encoder("wav2vec2-base", weights=str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match=r"junk.pt: cannot load weights"):
        load_encoder("wav2vec2-base", weights=str(junk))
