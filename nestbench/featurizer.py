"""The featurizer: learned softmax-weighted sum of an encoder's hidden states, or one layer.

Unlike NeMo's multi-layer feature (raw weights initialised to 1/L, no softmax, frozen along with a
frozen encoder), the weights here are zero-initialised logits under a softmax, and they are
ordinary parameters of the downstream model, so they train whether or not the encoder does.
"""

from __future__ import annotations

import torch
from torch import nn


class Featurizer(nn.Module):
    """Combine L+1 hidden states [B, T, D] into one [B, T, D].

    Args:
        num_inputs: number of hidden states it receives (L+1, or the number of cached layers).
        hidden_size: D.
        layer: None for the learned weighted sum; an int to pick that one input (no parameters).
        layer_norm: apply a parameter-free LayerNorm over D to each input before weighting
            (s3prl's ``normalize``), so layers of different scales compete fairly.
    """

    def __init__(
        self, num_inputs: int, hidden_size: int, layer: int | None = None, layer_norm: bool = False
    ):
        super().__init__()
        if layer is not None and not -num_inputs <= layer < num_inputs:
            raise ValueError(f"featurizer layer {layer} out of range for {num_inputs} inputs")
        self.num_inputs, self.hidden_size, self.layer = num_inputs, hidden_size, layer
        self.layer_norm = layer_norm
        self.logits = nn.Parameter(torch.zeros(num_inputs)) if layer is None else None

    def weights(self) -> torch.Tensor:
        """[num_inputs] the current layer weights (softmax of the logits; one-hot for ``layer``)."""
        if self.logits is None:
            w = torch.zeros(self.num_inputs)
            w[self.layer] = 1.0
            return w
        return torch.softmax(self.logits.detach().float().cpu(), dim=0)

    def forward(self, hidden_states: torch.Tensor | tuple[torch.Tensor, ...]) -> torch.Tensor:
        """hidden_states: [N, B, T, D] stacked, or a tuple of N [B, T, D] -> [B, T, D]."""
        if isinstance(hidden_states, tuple | list):
            if self.layer is not None:
                return self._norm(hidden_states[self.layer])
            hidden_states = torch.stack(tuple(hidden_states))
        if hidden_states.shape[0] != self.num_inputs:
            raise ValueError(
                f"featurizer expects {self.num_inputs} hidden states, got {hidden_states.shape[0]}"
            )
        if self.layer is not None:
            return self._norm(hidden_states[self.layer])
        x = self._norm(hidden_states)
        w = torch.softmax(self.logits, dim=0).to(x.dtype)
        return torch.einsum("n,nbtd->btd", w, x)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layer_norm:
            return x
        return nn.functional.layer_norm(x, x.shape[-1:])
