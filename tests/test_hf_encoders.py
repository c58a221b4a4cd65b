"""``hf:PATH`` encoders: small random-weight transformers models (config only, nothing
downloaded) saved with ``save_pretrained``, loaded through ``hf:``, equal to transformers' own
``output_hidden_states`` on the valid frames; padding invariance (the contract's check); clear
errors; a frozen SV run end to end. And ``s3prl:NAME``: the missing-checkpoint error and a small
wav2vec 2.0 upstream built locally."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from nestbench.encoders import EncoderSpecError, load_encoder
from nestbench.encoders.check import check_encoder
from nestbench.fingerprint import encoder_files

transformers = pytest.importorskip("transformers")

SMALL = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    conv_dim=(16, 16, 16),
    conv_stride=(5, 4, 2),
    conv_kernel=(10, 4, 2),
    num_conv_pos_embeddings=16,
    num_conv_pos_embedding_groups=2,
    hidden_dropout=0.0,
    attention_dropout=0.0,
    activation_dropout=0.0,
    feat_proj_dropout=0.0,
    layerdrop=0.0,
)
KINDS = {
    "wav2vec2": ("Wav2Vec2Config", "Wav2Vec2Model", {"feat_extract_norm": "group"}),
    "wav2vec2-layer": (
        "Wav2Vec2Config",
        "Wav2Vec2Model",
        {"feat_extract_norm": "layer", "do_stable_layer_norm": True},
    ),
    "hubert": ("HubertConfig", "HubertModel", {"feat_extract_norm": "group"}),
    "wavlm": ("WavLMConfig", "WavLMModel", {"feat_extract_norm": "layer", "num_buckets": 32}),
    "data2vec-audio": (
        "Data2VecAudioConfig",
        "Data2VecAudioModel",
        {"num_conv_pos_embeddings": 5, "conv_pos_kernel_size": 5},
    ),
}


def _make(tmp_path: Path, kind: str, seed: int = 0) -> tuple[Path, torch.nn.Module]:
    config_cls, model_cls, extra = KINDS[kind]
    torch.manual_seed(seed)
    config = getattr(transformers, config_cls)(**{**SMALL, **extra})
    model = getattr(transformers, model_cls)(config).eval()
    folder = tmp_path / kind
    model.save_pretrained(folder)
    return folder, model


def _audio(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    wav = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        wav[i, :n] = 0.1 * torch.randn(n, generator=g) + 0.02  # an offset: normalisation matters
    return wav, torch.tensor(lengths)


def _normalised(x):
    return (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + 1e-7)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_hf_encoders_match_transformers_on_valid_frames(tmp_path, kind):
    folder, model = _make(tmp_path, kind)
    enc = load_encoder(f"hf:{folder}")
    assert enc.frame_shift == 40 and enc.num_layers == 2 and enc.hidden_size == 32
    layer_norm = kind in ("wav2vec2-layer", "wavlm", "data2vec-audio")
    assert enc.normalize == layer_norm and enc.use_mask == layer_norm
    wav, lens = _audio([4000, 2600, 3333])
    with torch.inference_mode():
        out = enc(wav, lens)
        assert len(out.hidden_states) == 3
        for i, n in enumerate(lens.tolist()):
            x = wav[i : i + 1, :n]
            ref = model(_normalised(x) if layer_norm else x, output_hidden_states=True)
            t = int(out.lengths[i])
            assert t == ref.hidden_states[0].shape[1]
            for got, want in zip(out.hidden_states, ref.hidden_states, strict=True):
                torch.testing.assert_close(got[i, :t], want[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["wav2vec2", "wavlm"])
def test_hf_encoders_pass_the_contract_check(tmp_path, kind):
    folder, _ = _make(tmp_path, kind)
    results = check_encoder(load_encoder(f"hf:{folder}"), seed=0)
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]


def test_the_feature_extractor_config_is_respected(tmp_path):
    folder, model = _make(tmp_path, "wav2vec2-layer")
    (folder / "preprocessor_config.json").write_text(
        json.dumps({"do_normalize": False, "return_attention_mask": True})
    )
    enc = load_encoder(f"hf:{folder}")
    assert not enc.normalize and enc.use_mask
    wav, lens = _audio([3000, 2000])
    with torch.inference_mode():
        out = enc(wav, lens)
        ref = model(wav[1:, :2000], output_hidden_states=True).hidden_states[-1]
    torch.testing.assert_close(
        out.hidden_states[-1][1, : ref.shape[1]], ref[0], atol=1e-5, rtol=1e-5
    )


def test_hf_errors_name_what_is_missing(tmp_path):
    with pytest.raises(EncoderSpecError, match="no such folder"):
        load_encoder(f"hf:{tmp_path / 'nope'}")
    folder = tmp_path / "empty"
    folder.mkdir()
    with pytest.raises(EncoderSpecError, match="no config.json"):
        load_encoder(f"hf:{folder}")
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EncoderSpecError, match="model_type 'bert'"):
        load_encoder(f"hf:{folder}")
    (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(EncoderSpecError, match="no weights"):
        load_encoder(f"hf:{folder}")


def test_the_run_id_follows_the_weights(tmp_path):
    folder, _ = _make(tmp_path, "hubert")
    before = encoder_files(f"hf:{folder}", {})
    assert set(before) >= {"hf/config.json", "hf/model.safetensors"}
    _make(tmp_path, "hubert", seed=1)  # other weights in the same folder
    assert encoder_files(f"hf:{folder}", {}) != before


def test_frozen_sv_run_with_an_hf_encoder(tmp_path):
    from nestbench.runner import run
    from tests.sv_helpers import make_sv_folder

    folder, _ = _make(tmp_path, "wav2vec2-layer")
    data = make_sv_folder(tmp_path / "sv")
    r, result = run(
        "sv",
        ["trainer.progress=false", "trainer.max_epochs=2", f"cache.root={tmp_path / 'cache'}"],
        encoder=f"hf:{folder}",
        data=str(data),
        out=str(tmp_path / "runs"),
    )
    assert result.encoder == f"hf:{folder}" and result.encoder_info["frame_shift"] == 40
    assert 0 <= result.metrics["test"]["eer"]["value"] <= 100
    assert len(result.layer_weights["final"]) == 3
    assert result.inputs["encoder_files"]["hf/model.safetensors"]


# -- s3prl ------------------------------------------------------------------------------------


def test_s3prl_spec_needs_an_existing_checkpoint(tmp_path):
    with pytest.raises(EncoderSpecError, match="needs a local checkpoint"):
        load_encoder("s3prl:wav2vec2_local")
    missing = tmp_path / "w2v.pt"
    with pytest.raises(EncoderSpecError, match=f"checkpoint file not found: {missing}"):
        load_encoder("s3prl:wav2vec2_local", ckpt=str(missing))


def test_a_small_s3prl_upstream_built_locally(tmp_path):
    pytest.importorskip("s3prl")
    from s3prl.upstream.wav2vec2.wav2vec2_model import (
        AudioPretrainingConfig,
        Wav2Vec2Config,
        Wav2Vec2Model,
    )

    cfg = Wav2Vec2Config(
        encoder_layers=2,
        encoder_embed_dim=32,
        encoder_ffn_embed_dim=64,
        encoder_attention_heads=2,
        conv_feature_layers="[(16, 10, 5), (16, 4, 4), (16, 2, 2)]",
        conv_pos=16,
        conv_pos_groups=2,
        final_dim=16,
        latent_vars=8,
        latent_dim=16,
    )
    torch.manual_seed(0)
    model = Wav2Vec2Model(cfg)
    ckpt = tmp_path / "tiny_w2v.pt"
    task = AudioPretrainingConfig(normalize=False)
    plain = json.loads(
        json.dumps({"task_cfg": asdict(task), "model_cfg": asdict(cfg)}, default=str)
    )
    torch.save({**plain, "model_weight": model.state_dict()}, ckpt)
    enc = load_encoder("s3prl:wav2vec2_local", ckpt=str(ckpt))
    assert enc.num_layers == 2 and enc.hidden_size == 32
    results = check_encoder(enc, seed=0)
    assert all(r.ok for r in results), [(r.name, r.detail) for r in results if not r.ok]
    assert encoder_files("s3prl:wav2vec2_local", {"ckpt": str(ckpt)})["ckpt"]
