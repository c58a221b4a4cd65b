"""Diarization losses over per-frame speaker logits.

Both compare logits x [B, T, S] with 0/1 targets y [B, T, S] (S = ``diar.max_speakers`` slots,
unused slots all zero) on the valid frames of each window, as binary cross-entropy normalised by
the number of valid frames times S:

- **PIT** (permutation-invariant training, EEND / SUPERB): the BCE under the slot permutation of
  the targets that makes it smallest, found exactly by the Hungarian algorithm on the [S, S]
  matrix of slot-to-speaker BCEs (the loss of a permutation is a sum over its pairs);
- **sorted**: the BCE against the targets with their speakers in order of arrival (first active
  frame in the window; speakers never active last), so slot k is the k-th speaker to talk;
- **hybrid** (Sortformer): 0.5 x sorted + 0.5 x PIT.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment

from nestbench.layers import valid_mask

LOSSES = ("pit", "sorted", "hybrid")


def pairwise_bce(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, S, S]: summed BCE over valid frames of logit slot i against target speaker j.

    Uses BCE(x, y) = softplus(x) - x y, so the S x S matrix is one matmul, not S^2 passes.
    """
    m = mask[..., None]
    own = (F.softplus(x) * m).sum(1)  # [B, S]
    cross = torch.einsum("bti,btj->bij", x * m, y)
    return own[:, :, None] - cross


def arrival_order(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """y [B, T, S] with each item's speakers sorted by their first active valid frame."""
    t = y.shape[1]
    active = (y > 0.5) & (mask[..., None] > 0)
    frames = torch.arange(t, device=y.device)[None, :, None].expand_as(y)
    first = torch.where(active, frames, torch.full_like(frames, t)).amin(1)  # [B, S]
    order = torch.sort(first, dim=1, stable=True).indices  # [B, S]
    return y.gather(2, order[:, None, :].expand_as(y))


def best_permutation(cost: torch.Tensor) -> torch.Tensor:
    """[B, S] target speaker assigned to each slot, minimising the summed ``cost`` [B, S, S]."""
    c = cost.detach().float().cpu().numpy()
    cols = np.stack([linear_sum_assignment(ci)[1] for ci in c])
    return torch.as_tensor(cols, dtype=torch.long, device=cost.device)


def diarization_loss(
    x: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor, kind: str = "hybrid"
) -> torch.Tensor:
    """The ``kind`` loss (pit | sorted | hybrid) of logits x [B, T, S] against y [B, T, S]."""
    if kind not in LOSSES:
        raise ValueError(f"diarization loss {kind!r}: expected one of {', '.join(LOSSES)}")
    mask = valid_mask(lengths, x.shape[1]).to(x.dtype)
    denom = mask.sum().clamp_min(1) * x.shape[2]
    y = y.to(x.dtype)
    parts = []
    if kind in ("sorted", "hybrid"):
        cost = pairwise_bce(x, arrival_order(y, mask), mask)
        parts.append(torch.diagonal(cost, dim1=1, dim2=2).sum() / denom)
    if kind in ("pit", "hybrid"):
        cost = pairwise_bce(x, y, mask)
        perm = best_permutation(cost)
        parts.append(cost.gather(2, perm[..., None]).sum() / denom)
    return parts[0] if len(parts) == 1 else 0.5 * parts[0] + 0.5 * parts[1]
