"""SLU heads on the featurizer output x [B, T, D].

``SLUHead`` (the default, SUPERB's IC + SF designs together): an utterance-level intent
classifier (``pooling``: ``stats``, the mean and standard deviation over valid frames, or
``attention``, attentive statistics pooling; then Linear -> ReLU -> Linear over the training
intents) and a CTC branch (:class:`nestbench.tasks.asr.head.CTCHead`) over subword units with
slot tags around each entity's words.
"""

from __future__ import annotations

import torch
from nestbench.tasks.asr.head import CTCHead
from torch import nn


def _valid(lengths: torch.Tensor, t: int, device) -> torch.Tensor:
    return (torch.arange(t, device=device)[None] < lengths.to(device)[:, None]).float()


def weighted_stats(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation of x [B, T, D] under frame weights w [B, T] (summing to 1
    over each row's valid frames) -> [B, 2D]."""
    mean = (x * w[..., None]).sum(1)
    var = (x.pow(2) * w[..., None]).sum(1) - mean.pow(2)
    return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=-1)


class StatsPooling(nn.Module):
    """x [B, T, D], lengths [B] -> [B, 2D]: mean and std over the valid frames."""

    def forward(self, x, lengths):
        m = _valid(lengths, x.shape[1], x.device)
        return weighted_stats(x, m / m.sum(1, keepdim=True).clamp_min(1))


class AttentivePooling(nn.Module):
    """Attentive statistics pooling: frame weights softmax(v . tanh(W x)) over valid frames."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x, lengths):
        m = _valid(lengths, x.shape[1], x.device)
        s = self.score(x).squeeze(-1).masked_fill(m == 0, float("-inf"))
        return weighted_stats(x, torch.softmax(s, dim=1))


class IntentHead(nn.Module):
    """Pooling -> Linear(2D -> hidden) -> ReLU -> dropout -> Linear(hidden -> intents)."""

    def __init__(self, dim: int, num_intents: int, hidden: int, pooling: str, dropout: float):
        super().__init__()
        self.pool = AttentivePooling(dim) if pooling == "attention" else StatsPooling()
        self.mlp = nn.Sequential(
            nn.Linear(2 * dim, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_intents),
        )

    def forward(self, x, lengths):
        """-> intent logits [B, I]."""
        return self.mlp(self.pool(x, lengths))


class SLUHead(nn.Module):
    def __init__(self, dim: int, num_intents: int, num_units: int, intent: dict, ctc: dict):
        super().__init__()
        self.intent = IntentHead(dim, num_intents, **intent)
        self.ctc = CTCHead(dim, num_units, **ctc)
