"""Diarization heads: featurizer output -> per-frame logits of ``max_speakers`` speaker slots.

``DiarHead``: an optional Linear(D -> proj), a sequence model over the window, and a
Linear to S slot logits (a sigmoid each: speakers may overlap). Sequence models: ``bilstm``
(:class:`nestbench.layers.BiLSTM`), ``lstm`` (unidirectional, SUPERB SD's) and ``transformer``
(self-attention with a key padding mask and no positional encoding, as EEND-SA: which speaker
talks does not depend on the absolute position in a window).
"""

from __future__ import annotations

import torch
from torch import nn

from nestbench.layers import BiLSTM, valid_mask

#: ``diar.head`` -> its settings; ``diar.*`` values override them.
PRESETS = {
    # a 1-layer BiLSTM 128 (CPU, embedded corpus)
    "small": {"model": "bilstm", "proj_dim": 128, "hidden_size": 128, "num_layers": 1,
              "dropout": 0.1},
    # SUPERB SD: 1-layer LSTM 512 on the features, then Linear to the speakers
    "superb": {"model": "lstm", "proj_dim": 0, "hidden_size": 512, "num_layers": 1,
               "dropout": 0.0},
    # 2 self-attention layers of width 128 (4 heads, feed-forward 256)
    "transformer": {"model": "transformer", "proj_dim": 128, "hidden_size": 256,
                    "num_layers": 2, "dropout": 0.1},
}  # fmt: skip
MODELS = ("bilstm", "lstm", "transformer")


class DiarHead(nn.Module):
    def __init__(
        self,
        input_dim: int,
        max_speakers: int,
        model: str = "bilstm",
        proj_dim: int = 128,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.1,
        heads: int = 4,
    ):
        super().__init__()
        if model not in MODELS:
            raise ValueError(f"diarization head model {model!r}: expected one of {MODELS}")
        self.model = model
        self.proj = nn.Linear(input_dim, proj_dim) if proj_dim else None
        width = proj_dim or input_dim
        if model == "bilstm":
            self.seq = BiLSTM(width, hidden_size, num_layers, dropout)
            out = 2 * hidden_size
        elif model == "lstm":
            drop = dropout if num_layers > 1 else 0.0
            self.seq = nn.LSTM(width, hidden_size, num_layers, batch_first=True, dropout=drop)
            out = hidden_size
        else:
            layer = nn.TransformerEncoderLayer(
                width, heads, hidden_size, dropout, batch_first=True, norm_first=True
            )
            self.seq = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
            out = width
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(out, max_speakers)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], lengths [B] -> logits [B, T, S] (a frame's output never depends on the
        padding after its window's end)."""
        h = self.proj(x) if self.proj is not None else x
        if self.model == "bilstm":
            h = self.seq(h, lengths)
        elif self.model == "lstm":
            h = self.seq(h)[0]
        else:
            pad = ~valid_mask(lengths, h.shape[1], h.device)
            h = self.seq(h, src_key_padding_mask=pad)
        return self.out(self.dropout(h))
