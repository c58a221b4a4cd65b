"""The ``fbank`` baseline: NeMo's normalised 80-dim log-mel as a one-layer encoder.

SUPERB's FBANK baseline, with NEST's own front end: per-utterance, per-feature normalised log-mel
at 10 ms frames (``frame_shift`` 160). ``num_layers`` is 0, so ``hidden_states`` holds one tensor.
"""

from __future__ import annotations

import torch

from nestbench.encoders.base import Encoder, EncoderOutput
from nestbench.encoders.preprocessor import MelPreprocessor


class FbankEncoder(Encoder):
    """forward(wav [B, S], wav_lens [B]) -> hidden_states ([B, T, 80],), lengths = S // 160."""

    frame_shift = 160
    num_layers = 0

    def __init__(self, features: int = 80, name: str = "fbank"):
        super().__init__()
        self.name = name
        self.hidden_size = features
        # Generation 2.5: len // 160 frames, zero STFT padding -- padding invariant.
        self.preprocessor = MelPreprocessor(features=features, generation="2.5")

    def forward(self, wav: torch.Tensor, wav_lens: torch.Tensor) -> EncoderOutput:
        mel, mel_len = self.preprocessor(wav, wav_lens)  # [B, 80, T'] (T' padded to 16)
        x = mel[:, :, : int(mel_len.max())].transpose(1, 2).contiguous()
        return EncoderOutput((x,), mel_len.long())
