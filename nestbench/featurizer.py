"""The featurizer: learned softmax-weighted sum of an encoder's hidden states, or one layer.

Unlike NeMo's multi-layer feature (raw weights initialised to 1/L, no softmax, frozen along with a
frozen encoder), the weights here are zero-initialised logits under a softmax, and they are
ordinary parameters of the downstream model, so they train whether or not the encoder does (at
their own learning rate, ``optim.layer_weights_lr_scale`` times the head's).

A softmax weight says little when the layers differ in scale (NEST's layer 0 is ~100 times
larger than its blocks' outputs): the featurizer also tracks each input's mean frame RMS while
training, and :meth:`Featurizer.effective_shares` gives each layer's share of the weighted sum,
``w_i s_i / sum_j w_j s_j``.
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
        # running sums of each input's mean frame RMS (after the optional LayerNorm)
        self.register_buffer("rms_sum", torch.zeros(num_inputs))
        self.register_buffer("rms_count", torch.zeros(()))

    def layer_scales(self) -> torch.Tensor:
        """[num_inputs] mean frame RMS of each input seen in training (ones before any)."""
        if float(self.rms_count) == 0:
            return torch.ones(self.num_inputs)
        return (self.rms_sum / self.rms_count).float().cpu()

    def effective_shares(self) -> torch.Tensor:
        """[num_inputs] each input's share of the output: weight x scale, normalised to 1."""
        contrib = self.weights() * self.layer_scales()
        return contrib / contrib.sum().clamp_min(1e-12)

    @torch.no_grad()
    def _track(self, x: torch.Tensor) -> None:
        """x [N, B, T, D] (normalised inputs): add the batch's mean frame RMS of each input."""
        rms = x.detach().float().pow(2).mean(dim=-1).sqrt()  # [N, B, T]
        frames = rms.flatten(1)
        valid = frames > 0  # padded frames are exact zeros
        mean = (frames * valid).sum(1) / valid.sum(1).clamp_min(1)
        self.rms_sum += mean
        self.rms_count += 1

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
        if self.training:
            self._track(x)
        w = torch.softmax(self.logits, dim=0).to(x.dtype)
        return torch.einsum("n,nbtd->btd", w, x)

    def _norm(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layer_norm:
            return x
        return nn.functional.layer_norm(x, x.shape[-1:])
