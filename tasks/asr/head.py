"""The ASR head: featurizer output -> CTC log-probabilities, and SpecAugment on its input.

``CTCHead``: Linear(D -> proj) -> ``num_layers`` bidirectional LSTM layers (``hidden`` units
each way, dropout between) -> dropout -> Linear(2 x hidden -> upsample x classes), each frame's
output read as ``upsample`` consecutive output frames (an 80 ms encoder gives 12.5 frames/s, fewer
than some utterances have units; upsampling after the LSTM keeps its cost at the encoder's rate)
-> log-softmax. SUPERB's preset is proj 1024, 2 layers of 1024, dropout 0.2; ``num_layers=0`` is a
linear head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from nestbench.config import spec
from nestbench.layers import BiLSTM
from nestbench.task import TaskError

#: Head presets: ``asr.head`` -> (proj, hidden, layers, dropout); ``asr.*`` values override them.
PRESETS = {
    "superb": {"proj_dim": 1024, "hidden_size": 1024, "num_layers": 2, "dropout": 0.2},
    "small": {"proj_dim": 128, "hidden_size": 128, "num_layers": 2, "dropout": 0.1},
    "linear": {"proj_dim": 256, "hidden_size": 0, "num_layers": 0, "dropout": 0.0},
}


class CTCHead(nn.Module):
    def __init__(
        self,
        input_dim: int,
        num_classes: int,
        proj_dim: int = 256,
        hidden_size: int = 256,
        num_layers: int = 2,
        dropout: float = 0.2,
        upsample: int = 1,
    ):
        super().__init__()
        self.upsample = int(upsample)
        self.proj = nn.Linear(input_dim, proj_dim)
        self.lstm = BiLSTM(proj_dim, hidden_size, num_layers, dropout) if num_layers > 0 else None
        self.dropout = nn.Dropout(dropout)
        width = 2 * hidden_size if self.lstm is not None else proj_dim
        self.num_classes = num_classes
        self.out = nn.Linear(width, self.upsample * num_classes)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths * self.upsample

    @property
    def state_size(self) -> int:
        """The width of :meth:`states` (2 x hidden, or proj for a linear head)."""
        return self.out.in_features

    def states(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, D] -> the last LSTM layer's states (the projection's without one) [B, T, H]."""
        h = self.proj(x)
        return self.lstm(h, lengths) if self.lstm is not None else h

    def classify(self, h: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """States h [B, T, H] -> log-probabilities [B, T x upsample, C] and their lengths."""
        b, t, _ = h.shape
        logits = self.out(self.dropout(h)).reshape(b, t * self.upsample, self.num_classes)
        return logits.log_softmax(-1), self.output_lengths(lengths)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, D], lengths [B] -> log-probabilities [B, T x upsample, C] and their lengths."""
        return self.classify(self.states(x, lengths), lengths)


def spec_augment(
    x: torch.Tensor,
    lengths: torch.Tensor,
    time_masks: int,
    time_width: int,
    feature_masks: int,
    feature_width: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """SpecAugment on features (no time warping): per utterance, ``time_masks`` spans of up to
    ``time_width`` frames (within its length) and ``feature_masks`` spans of up to
    ``feature_width`` feature dimensions are set to the utterance's mean (features need not be
    centred, so zeros would be out of range). x [B, T, D], lengths [B] -> [B, T, D]."""
    b, t, d = x.shape
    mask = torch.zeros(b, t, d, dtype=torch.bool, device=x.device)
    frames = torch.arange(t, device=x.device)
    dims = torch.arange(d, device=x.device)

    def spans(count: int, width: int, limit: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, count] starts and ends of spans of up to ``width`` within [0, limit)."""
        w = (torch.rand(b, count, generator=generator) * (width + 1)).long().to(x.device)
        w = torch.minimum(w, limit[:, None])
        room = (limit[:, None] - w + 1).clamp_min(1)
        start = (torch.rand(b, count, generator=generator).to(x.device) * room).long()
        return start, start + w

    if time_masks > 0 and time_width > 0:
        s, e = spans(time_masks, time_width, lengths.to(x.device))
        hit = (frames[None, None] >= s[..., None]) & (frames[None, None] < e[..., None])
        mask |= hit.any(1)[:, :, None]
    if feature_masks > 0 and feature_width > 0:
        s, e = spans(feature_masks, feature_width, torch.full((b,), d, device=x.device))
        hit = (dims[None, None] >= s[..., None]) & (dims[None, None] < e[..., None])
        mask |= hit.any(1)[:, None, :]
    valid = frames[None] < lengths.to(x.device)[:, None]  # [B, T]
    w = valid.to(x.dtype)[..., None]
    mean = (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1)
    return torch.where(mask & valid[..., None], mean, x)


def ctc_loss(
    log_probs: torch.Tensor, out_lens: torch.Tensor, targets: list[torch.Tensor], who: str = "asr"
) -> torch.Tensor:
    """Mean over utterances of CTC loss / target length (torch's and NeMo's "mean"), blank 0.

    log_probs [B, T, C], out_lens [B], targets: B tensors of class ids. Never zeroes a loss: an
    infinite one (more CTC steps than frames) raises, naming ``who``.
    """
    flat = torch.cat(targets).to(log_probs.device)
    target_lens = torch.tensor([t.numel() for t in targets], device=log_probs.device)
    losses = nn.functional.ctc_loss(
        log_probs.float().transpose(0, 1),
        flat,
        out_lens,
        target_lens,
        blank=0,
        reduction="none",
        zero_infinity=False,
    )
    if not bool(torch.isfinite(losses).all()):
        bad = int((~torch.isfinite(losses)).sum())
        raise TaskError(
            f"{who}: the CTC loss of {bad} utterance(s) of a batch is not finite (more units "
            "than frames reached training); this is a bug, please report it"
        )
    return (losses / target_lens.clamp_min(1)).mean()


@dataclass
class CTCBranchConfig:
    """The config keys of a CTC head over sentencepiece units, shared by ASR and SLU (``asr.*``,
    ``slu.*``): head size overrides, upsampling, units, SpecAugment."""

    proj_dim: int | None = spec(min=1)
    hidden_size: int | None = spec(min=1)
    num_layers: int | None = spec(min=0)
    dropout: float | None = spec(min=0, max=0.9)
    upsample: str | int = spec()
    units: str = spec(choices=("unigram", "bpe"))
    vocab_size: int = spec(min=2)
    time_masks: int = spec(min=0)
    time_mask_seconds: float = spec(min=0)
    feature_masks: int = spec(min=0)
    feature_mask_fraction: float = spec(min=0, max=1)


def upsample_factor(value, frame_rate: float, key: str) -> int:
    """``upsample`` as a factor: ``auto`` is 2 below 25 frames/s (NEST's 12.5), else 1."""
    if value == "auto":
        return 2 if frame_rate < 25 else 1
    if str(value) not in ("1", "2", "3", "4"):
        raise TaskError(f"{key}: {value!r}, expected auto, 1, 2, 3 or 4")
    return int(value)


def augment(x: torch.Tensor, lengths: torch.Tensor, opts, frame_rate: float) -> torch.Tensor:
    """:func:`spec_augment` with the widths of a :class:`CTCBranchConfig` (seconds, fraction)."""
    return spec_augment(
        x,
        lengths,
        opts.time_masks,
        int(round(opts.time_mask_seconds * frame_rate)),
        opts.feature_masks,
        int(round(opts.feature_mask_fraction * x.shape[-1])),
    )
