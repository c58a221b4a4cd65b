"""``hf:PATH`` encoders: a local Hugging Face ``transformers`` folder (``save_pretrained``) of a
Wav2Vec2, HuBERT, WavLM or Data2VecAudio model, every hidden state exposed as a layer.

Loaded with ``transformers`` (optional: ``pip install nestbench[hf]``) from the folder only
(``local_files_only``; nothing is downloaded). Weights: ``model.safetensors`` (or a sharded
``model.safetensors.index.json``); a ``pytorch_model.bin`` is read by transformers with
``torch.load(weights_only=True)``, never unpickling code.

What the model's own feature extractor would do is kept:

- **normalisation**: ``do_normalize`` of the folder's ``preprocessor_config.json`` (zero mean, unit
  variance per utterance over its samples, variance + 1e-7, as ``Wav2Vec2FeatureExtractor``);
  without that file, models whose convolutions use layer norm (``feat_extract_norm: layer``, the
  large checkpoints, and Data2VecAudio) are normalised and group-norm ones are not;
- **attention mask**: ``return_attention_mask`` of that file, or the same rule: layer-norm models
  take an attention mask over the padded batch; group-norm models (the base checkpoints) must not
  see padding at all (their first convolution normalises over the whole time axis), so each
  utterance runs alone, unpadded (Data2VecAudio too: its stacked position convolutions carry
  the padding into the last valid frames even with a mask). Either way an utterance's features do not depend on its batch
  (the contract's padding invariance).

hidden_states[0] is what transformers' ``output_hidden_states`` gives first (the transformer's
input: projected features plus the convolutional position embedding), hidden_states[i] the
output of layer i (with the final layer norm on the last one, for stable-layer-norm models).
frame_shift is the product of ``conv_stride`` (320).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from nestbench.encoders.base import Encoder, EncoderOutput
from nestbench.layers import valid_mask

#: config.json model_type -> the transformers class
MODEL_CLASSES = {
    "wav2vec2": "Wav2Vec2Model",
    "hubert": "HubertModel",
    "wavlm": "WavLMModel",
    "data2vec-audio": "Data2VecAudioModel",
}
#: models whose masked batches equal their utterances run alone: Data2VecAudio's stacked
#: position convolutions carry the padding's values into the last valid frames, so it always
#: runs one utterance at a time
BATCHED = ("wav2vec2", "hubert", "wavlm")
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


class HFEncoderError(ValueError):
    """An ``hf:`` folder that cannot be loaded (the message names the file and what is missing)."""


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HFEncoderError(f"{path}: not readable JSON ({e})") from e
    if not isinstance(data, dict):
        raise HFEncoderError(f"{path}: expected a JSON object")
    return data


def weight_files(folder: Path) -> list[Path]:
    """The weight files of a transformers folder (for the run's input digest)."""
    folder = Path(folder).expanduser()
    found = [folder / n for n in WEIGHT_FILES if (folder / n).is_file()]
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(_json(index).get("weight_map", {}).values()))
        found += [folder / s for s in shards if (folder / s).is_file()]
    return found + [folder / "config.json"]


class HFEncoder(Encoder):
    """A transformers speech SSL model as an nestbench encoder (see the module docstring).

    Args:
        path: the folder holding ``config.json`` and the weights.
        normalize, attention_mask: override what the folder's files say (None: theirs).
    """

    def __init__(
        self,
        path: str | Path,
        normalize: bool | None = None,
        attention_mask: bool | None = None,
    ):
        super().__init__()
        folder = Path(path).expanduser()
        self.name = f"hf:{path}"
        if not folder.is_dir():
            raise HFEncoderError(
                f"hf:{path}: no such folder (a transformers save_pretrained folder)"
            )
        if not (folder / "config.json").is_file():
            raise HFEncoderError(
                f"{folder}: no config.json (a transformers save_pretrained folder)"
            )
        config = _json(folder / "config.json")
        model_type = config.get("model_type")
        if model_type not in MODEL_CLASSES:
            raise HFEncoderError(
                f"{folder / 'config.json'}: model_type {model_type!r}, expected one of "
                f"{', '.join(MODEL_CLASSES)}"
            )
        if not any((folder / n).is_file() for n in WEIGHT_FILES):
            raise HFEncoderError(f"{folder}: no weights ({' or '.join(WEIGHT_FILES)})")
        try:
            import transformers
        except ImportError as e:
            raise HFEncoderError(
                f"hf:{path} needs the transformers package: pip install 'nestbench[hf]' ({e})"
            ) from e
        cls = getattr(transformers, MODEL_CLASSES[model_type])
        try:
            self.model = cls.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError, RuntimeError) as e:
            raise HFEncoderError(f"{folder}: transformers could not load it ({e})") from e
        self.model.eval()
        cfg = self.model.config
        layer_norm = getattr(cfg, "feat_extract_norm", "layer") == "layer"
        pre = folder / "preprocessor_config.json"
        pre_cfg = _json(pre) if pre.is_file() else {}
        self.normalize = bool(
            pre_cfg.get("do_normalize", layer_norm) if normalize is None else normalize
        )
        mask = pre_cfg.get("return_attention_mask", layer_norm)
        self.use_mask = bool(mask if attention_mask is None else attention_mask)
        self.model_type = model_type
        self.num_layers = int(cfg.num_hidden_layers)
        self.hidden_size = int(cfg.hidden_size)
        self.frame_shift = int(math.prod(cfg.conv_stride))
        self.path = str(folder)

    def identity(self) -> dict:
        return {
            **super().identity(),
            "model_type": self.model_type,
            "normalize": self.normalize,
            "attention_mask": self.use_mask,
        }

    def _normalised(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> torch.Tensor:
        """Per-utterance zero mean, unit variance over the valid samples; padding stays 0."""
        valid = valid_mask(wav_lens, wav.shape[1], wav.device).to(wav.dtype)
        n = wav_lens.to(wav.device, wav.dtype).clamp_min(1)[:, None]
        mean = (wav * valid).sum(1, keepdim=True) / n
        var = (((wav - mean) * valid) ** 2).sum(1, keepdim=True) / n
        return (wav - mean) / torch.sqrt(var + 1e-7) * valid

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        """wav [B, S], wav_lens [B] -> L+1 hidden states [B, T, D] and lengths [B]."""
        wav_lens = wav_lens.to(wav.device)
        x = self._normalised(wav, wav_lens) if self.normalize else wav
        lengths = self.model._get_feat_extract_output_lengths(wav_lens).long()
        if self.use_mask and self.model_type in BATCHED:
            mask = valid_mask(wav_lens, wav.shape[1], wav.device).long()
            out = self.model(x, attention_mask=mask, output_hidden_states=True)
            return EncoderOutput(tuple(out.hidden_states), lengths)
        per = [
            self.model(x[i : i + 1, : int(wav_lens[i])], output_hidden_states=True).hidden_states
            for i in range(x.shape[0])
        ]
        t = max(int(h[0].shape[1]) for h in per)
        states = tuple(
            torch.cat([torch.nn.functional.pad(h[k], (0, 0, 0, t - h[k].shape[1])) for h in per], 0)
            for k in range(len(per[0]))
        )
        return EncoderOutput(states, lengths)
