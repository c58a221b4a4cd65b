"""Sequence layers the task heads share."""

from __future__ import annotations

import torch
from torch import nn


def valid_mask(lengths: torch.Tensor, t: int, device=None) -> torch.Tensor:
    """BoolTensor [B, t], True at the valid frames ``i < lengths[b]`` (on ``device``, by
    default the lengths' own)."""
    device = device if device is not None else lengths.device
    return torch.arange(t, device=device)[None] < lengths.to(device)[:, None]


def frame_pool(x: torch.Tensor, lengths: torch.Tensor, factor: int):
    """Average non-overlapping groups of ``factor`` frames: x [B, T, D], lengths [B] ->
    [B, ceil(T / factor), D], ceil(lengths / factor) (a last partial group averages the valid
    frames it has; padding never enters). ``factor`` <= 1 returns x and lengths unchanged."""
    if factor <= 1:
        return x, lengths
    b, t, d = x.shape
    pad = (-t) % factor
    valid = valid_mask(lengths, t, x.device).to(x.dtype)
    xs = nn.functional.pad(x * valid[..., None], (0, 0, 0, pad))
    counts = nn.functional.pad(valid, (0, pad)).reshape(b, -1, factor).sum(-1, keepdim=True)
    pooled = xs.reshape(b, -1, factor, d).sum(2) / counts.clamp_min(1)
    return pooled, (lengths + factor - 1) // factor


def reverse_padded(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each sequence of x [B, T, H] reversed within its length [B] (padding stays at the end)."""
    t = torch.arange(x.shape[1], device=x.device)[None]
    n = lengths.to(x.device)[:, None]
    idx = torch.where(t < n, n - 1 - t, t)
    return x.gather(1, idx[..., None].expand(-1, -1, x.shape[2]))


class BiLSTM(nn.Module):
    """Bidirectional LSTM layers over padded batches, each direction its own unidirectional
    LSTM; the backward one runs on each sequence reversed within its length, so padding never
    reaches a valid frame. (Same maths as ``nn.LSTM(bidirectional=True)`` on a packed sequence,
    whose backward pass is ~15x slower on CPUs.) x [B, T, D], lengths [B] -> [B, T, 2H].
    Building one turns on ``torch.set_flush_denormal`` (see ``__init__``)."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, dropout: float):
        super().__init__()
        # LSTM gradients through saturated gates underflow to denormals, which make a CPU step
        # several times slower; flushing them to zero changes nothing measurable
        torch.set_flush_denormal(True)
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.fwd = nn.ModuleList(nn.LSTM(d, hidden_size, batch_first=True) for d in sizes)
        self.bwd = nn.ModuleList(nn.LSTM(d, hidden_size, batch_first=True) for d in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        for i, (f, b) in enumerate(zip(self.fwd, self.bwd, strict=True)):
            if i > 0:
                x = self.dropout(x)
            back, _ = b(reverse_padded(x, lengths))
            x = torch.cat([f(x)[0], reverse_padded(back, lengths)], dim=-1)
        return x
