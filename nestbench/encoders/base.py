"""The Encoder contract: anything that turns 16 kHz audio into layers of features.

Every encoder in nestbench (NEST, the fbank baseline, torchaudio's wav2vec2 family, third-party
plug-ins) is a :class:`torch.nn.Module` with these attributes and this ``forward``:

- ``name``: str, the registry name or path it was loaded from;
- ``sample_rate``: int, always 16000;
- ``frame_shift``: int, input samples per output frame (1280 for NEST, 320 for wav2vec2);
- ``num_layers``: int, L (number of blocks);
- ``hidden_size``: int, D;
- ``forward(wav: FloatTensor[B, S], wav_lens: LongTensor[B]) -> EncoderOutput``.

``EncoderOutput.hidden_states`` holds L+1 tensors of shape [B, T, D]: index 0 is the input to the
first block, index i the output of block i. ``EncoderOutput.lengths`` [B] gives the number of
valid frames per utterance. Padding invariance: an utterance's valid frames do not depend on what
it is batched with.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class EncoderOutput:
    """Result of an encoder forward pass.

    hidden_states: tuple of L+1 FloatTensor [B, T, D]; index 0 is the input to the first block.
    lengths: LongTensor [B], valid frames per utterance (T >= lengths.max()).
    """

    hidden_states: tuple[torch.Tensor, ...]
    lengths: torch.Tensor

    @property
    def last_hidden_state(self) -> torch.Tensor:
        """FloatTensor [B, T, D]: the output of the last block."""
        return self.hidden_states[-1]


class Encoder(nn.Module):
    """Base class for nestbench encoders (subclassing it is optional: the contract is duck-typed).

    Subclasses set ``name``, ``frame_shift``, ``num_layers`` and ``hidden_size`` and implement
    ``forward(wav [B, S], wav_lens [B]) -> EncoderOutput``.
    """

    name: str = "encoder"
    sample_rate: int = 16000
    frame_shift: int = 0
    num_layers: int = 0
    hidden_size: int = 0

    def identity(self) -> dict:
        """A description of what this encoder computes, used to key feature caches.

        Default: class, name, the sizes and a digest of every parameter and buffer. Two encoders
        with the same identity give the same features for the same audio.
        """
        return {
            "class": f"{type(self).__module__}.{type(self).__qualname__}",
            "name": self.name,
            "frame_shift": self.frame_shift,
            "num_layers": self.num_layers,
            "hidden_size": self.hidden_size,
            "weights": state_digest(self),
        }


def state_digest(module: nn.Module) -> str:
    """SHA-256 (hex, 16 chars) over the names, dtypes, shapes and values of a module's state."""
    h = hashlib.sha256()
    for key, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        if t.numel():  # raw bytes of any dtype (bfloat16 and bool included)
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


CONTRACT_ATTRIBUTES = ("name", "sample_rate", "frame_shift", "num_layers", "hidden_size")
