"""wav2vec2 / HuBERT / WavLM baselines through torchaudio's model builders.

Weights come from a local file (``weights=PATH``: a torchaudio state dict, for example saved from
``torchaudio.pipelines.WAV2VEC2_BASE.get_model().state_dict()``); without one the model is randomly
initialised. Nothing is downloaded.

Padding invariance: the base models' first convolution uses GroupNorm over the whole time axis, so
the convolutional feature extractor runs on each utterance without its padding. wav2vec2 and HuBERT
then run their transformer on the batch with an attention mask; torchaudio's WavLM refuses
attention masks, so its transformer also runs one utterance at a time.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchaudio.models as tam

from nestbench.encoders.base import Encoder, EncoderOutput

BUILDERS = {
    "wav2vec2-base": tam.wav2vec2_base,
    "hubert-base": tam.hubert_base,
    "wavlm-base": tam.wavlm_base,
}


class TorchaudioSSLEncoder(Encoder):
    """A torchaudio Wav2Vec2Model as an nestbench encoder.

    hidden_states[0] is the transformer input (projected features + convolutional position
    embedding, as torchaudio's ``Transformer._preprocess`` gives it); hidden_states[i] is the output
    of transformer layer i. frame_shift 320 (20 ms).
    """

    frame_shift = 320

    def __init__(self, arch: str, weights: str | Path | None = None):
        super().__init__()
        if arch not in BUILDERS:
            raise ValueError(f"unknown torchaudio architecture {arch!r}; valid: {sorted(BUILDERS)}")
        self.name = arch
        self.model = BUILDERS[arch]()
        self.batched_transformer = arch != "wavlm-base"
        transformer = self.model.encoder.transformer
        self.num_layers = len(transformer.layers)
        self.hidden_size = transformer.pos_conv_embed.embed_dim
        self.weights_path = None if weights is None else str(weights)
        if weights is not None:
            load_state_dict_file(self.model, Path(weights))

    def _features(self, wav: torch.Tensor, wav_lens: torch.Tensor):
        """Per-utterance conv features, zero-padded: ([B, T, C], lengths [B])."""
        feats = []
        for i in range(wav.shape[0]):
            f, _ = self.model.feature_extractor(wav[i : i + 1, : int(wav_lens[i])], None)
            feats.append(f[0])
        lengths = torch.tensor([f.shape[0] for f in feats], device=wav.device)
        return torch.nn.utils.rnn.pad_sequence(feats, batch_first=True), lengths

    def _transformer(self, feats: torch.Tensor, lengths: torch.Tensor | None) -> list[torch.Tensor]:
        encoder = self.model.encoder
        x, mask = encoder._preprocess(feats, lengths)
        x = encoder.transformer._preprocess(x)
        states, position_bias = [x], None
        for layer in encoder.transformer.layers:
            x, position_bias = layer(x, mask, position_bias=position_bias)
            states.append(x)
        return states

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        """wav [B, S], wav_lens [B] -> L+1 hidden states [B, T, 768], lengths [B]."""
        feats, lengths = self._features(wav, wav_lens)
        if self.batched_transformer:
            states = self._transformer(feats, lengths)
        else:
            per_utt = [
                self._transformer(feats[i : i + 1, : int(n)], None) for i, n in enumerate(lengths)
            ]
            states = []
            for layer in zip(*per_utt, strict=True):
                padded = feats.new_zeros(len(layer), feats.shape[1], layer[0].shape[-1])
                for i, h in enumerate(layer):
                    padded[i, : h.shape[1]] = h[0]
                states.append(padded)
        mask = torch.arange(feats.shape[1], device=wav.device)[None, :] < lengths[:, None]
        states = [h * mask[..., None] for h in states]
        return EncoderOutput(hidden_states=tuple(states), lengths=lengths)

    def identity(self) -> dict:
        return {**super().identity(), "arch": self.name}


def load_state_dict_file(model: torch.nn.Module, path: Path) -> None:
    """Load a state-dict file into ``model`` strictly (weights_only), with a clear error."""
    from nestbench.encoders.checkpoint import CheckpointError

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError as e:
        raise CheckpointError(f"{path}: no such weights file") from e
    except Exception as e:
        raise CheckpointError(f"{path}: cannot load weights ({e})") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a state dict, found {type(state).__name__}")
    result = model.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not fit {type(model).__name__}: "
            f"{len(result.missing_keys)} missing keys {result.missing_keys[:10]}, "
            f"{len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:10]}"
        )
