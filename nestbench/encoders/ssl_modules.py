"""NEST pretraining parts (BEST-RQ style), with NeMo's state-dict keys.

- :class:`RandomBlockMasking` (``mask_embedding`` [F]): replaces random blocks of mel frames;
- :class:`RandomProjectionVectorQuantizer` (``proj.weight`` [H*code_dim, F*8],
  ``codebooks`` [H, C, code_dim]): frozen random targets from the clean mel;
- :class:`MultiSoftmaxDecoder` (``decoder_layers.0.{weight [C*H, d, 1], bias}``): log-probs;
- :func:`masked_token_loss`: NLL on the encoder steps whose frames were mostly masked.

H = number of codebooks (``num_books``), C = classes per codebook.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _freeze(module: nn.Module) -> None:
    for p in module.parameters():
        p.requires_grad_(False)


class RandomBlockMasking(nn.Module):
    """Replace random blocks of ``block_size`` frames by a frozen ``mask_embedding`` [F].

    With ``allow_overlap`` (NEST), each utterance of valid length L gets
    ``n ~ Binomial(L - block_size, mask_prob)`` distinct block starts drawn from
    ``[0, L - block_size)``; blocks may overlap. Utterances with ``block_size >= 0.8 L`` get one
    block of 8 frames at the start instead. Without ``allow_overlap`` the NeMo algorithm differs
    (evenly spread blocks); it is not implemented here.
    """

    def __init__(
        self,
        feat_in: int,
        mask_prob: float = 0.01,
        block_size: int = 40,
        mask_value: float | None = None,
        freeze: bool = True,
        allow_overlap: bool = True,
        max_mask_ratio: float = 0.8,
    ):
        super().__init__()
        if not allow_overlap:
            raise ValueError(
                "RandomBlockMasking: only allow_overlap=true (NEST's setting) is supported"
            )
        self.mask_prob = mask_prob
        self.block_size = block_size
        self.max_mask_ratio = max_mask_ratio
        if mask_value is None:
            self.mask_embedding = nn.Parameter(torch.randn(feat_in) * 0.1)
        else:
            self.mask_embedding = nn.Parameter(torch.full((feat_in,), float(mask_value)))
        if freeze:
            _freeze(self)

    def forward(
        self, feats: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """feats: [B, F, T]; lengths: [B] valid frames.

        Returns:
            masked: [B, F, T], feats with masked frames replaced by ``mask_embedding``;
            masks: [B, F, T] float, 1.0 on masked frames.
        """
        b, _, t = feats.shape
        device = feats.device
        lengths = lengths.to(device).long()
        steps = torch.arange(t, device=device)[None, :]  # [1, T]
        count = (lengths - self.block_size).clamp(min=0)  # possible starts per utterance
        n = torch.binomial(count.float(), torch.full((b,), float(self.mask_prob), device=device))
        # n distinct starts among [0, count): the n smallest of random keys over valid starts
        keys = torch.rand(b, t, device=device).masked_fill(steps >= count[:, None], 2.0)
        rank = keys.argsort(dim=1).argsort(dim=1)
        starts = (rank < n[:, None]).float()
        # frame s is covered if some start lies in (s - block_size, s]
        csum = F.pad(starts.cumsum(1), (self.block_size, 0))
        covered = (csum[:, self.block_size :] - csum[:, :t]) > 0.5
        short = self.block_size >= lengths * self.max_mask_ratio  # [B]
        short_cover = steps < torch.clamp(lengths, max=8)[:, None]
        covered = torch.where(short[:, None], short_cover, covered)  # [B, T]
        masks = covered[:, None, :].expand_as(feats).to(feats.dtype)
        masked = torch.where(
            covered[:, None, :], self.mask_embedding[None, :, None].to(feats), feats
        )
        return masked, masks


class RandomProjectionVectorQuantizer(nn.Module):
    """Frozen random-projection quantizer (BEST-RQ).

    Stacks ``combine_time_steps`` frames -> ``proj`` (no bias) -> L2-normalise per codebook ->
    index of the nearest of the C code vectors (L2 distance, or max cosine).
    """

    def __init__(
        self,
        feat_in: int,
        code_dim: int = 16,
        num_classes: int = 8192,
        num_books: int = 1,
        dist_fn: str = "l2",
        freeze: bool = True,
        combine_time_steps: int = 8,
        time_ahead: bool = False,
        squeeze_single: bool = False,
    ):
        super().__init__()
        if dist_fn not in ("l2", "cosine"):
            raise ValueError(f"unknown dist_fn {dist_fn!r}: use 'l2' or 'cosine'")
        if time_ahead:
            raise ValueError("RandomProjectionVectorQuantizer: time_ahead=true is not supported")
        self.feat_in = feat_in
        self.code_dim = code_dim
        self.num_classes = num_classes
        self.num_books = num_books
        self.dist_fn = dist_fn
        self.combine_time_steps = combine_time_steps
        self.proj = nn.Linear(feat_in * combine_time_steps, num_books * code_dim, bias=False)
        nn.init.xavier_normal_(self.proj.weight)
        self.codebooks = nn.Parameter(
            F.normalize(torch.randn(num_books, num_classes, code_dim), dim=-1)
        )
        if freeze:
            _freeze(self)

    @torch.no_grad()
    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        """feats: [B, F, T] (T a multiple of combine_time_steps) -> tokens LongTensor [B, T/k, H]."""
        b, f, t = feats.shape
        k = self.combine_time_steps
        x = feats.transpose(1, 2)[:, : t - t % k].reshape(b, t // k, k * f)
        # targets in full precision even under mixed-precision training
        with torch.autocast(feats.device.type, enabled=False):
            x = self.proj(x.to(self.proj.weight.dtype))
            x = x.view(b, t // k, self.num_books, self.code_dim)
            x = F.normalize(x, dim=-1).to(self.codebooks.dtype)
            sim = torch.einsum("btnd,ncd->btnc", x, self.codebooks)  # [B, T/k, H, C]
        if self.dist_fn == "cosine":
            return sim.argmax(-1)
        # ||x - c||^2 = ||x||^2 - 2 x.c + ||c||^2; ||x||^2 is the same for every code
        dist = self.codebooks.pow(2).sum(-1)[None, None] - 2 * sim
        return dist.argmin(-1)


class MultiSoftmaxDecoder(nn.Module):
    """Conv1d(d, C*H, 1) -> log_softmax over the C classes of each of the H codebooks."""

    def __init__(
        self,
        feat_in: int,
        num_classes: int,
        num_decoders: int = 1,
        use_bias: bool = False,
        init_mode: str = "xavier_uniform",
        squeeze_single: bool = False,
    ):
        super().__init__()
        self.num_classes = num_classes
        self.num_decoders = num_decoders
        self.decoder_layers = nn.Sequential(
            nn.Conv1d(feat_in, num_classes * num_decoders, 1, bias=use_bias)
        )
        if init_mode == "xavier_uniform":
            nn.init.xavier_uniform_(self.decoder_layers[0].weight)
        elif init_mode == "xavier_normal":
            nn.init.xavier_normal_(self.decoder_layers[0].weight)

    def forward(self, encoded: torch.Tensor) -> torch.Tensor:
        """encoded: [B, d, T'] -> log-probs [B, T', C, H] (channel index = class * H + book)."""
        logits = self.decoder_layers(encoded).transpose(1, 2)
        logits = logits.reshape(
            logits.shape[0], logits.shape[1], self.num_classes, self.num_decoders
        )
        return logits.log_softmax(dim=2)


def scored_steps(
    masks: torch.Tensor,
    tokens: torch.Tensor,
    num_steps: int,
    combine_time_steps: int = 8,
    mask_threshold: float = 0.8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The steps the masked-token loss scores, aligned with the decoder's ``num_steps`` steps.

    masks: [B, F, T] (T = T' * combine_time_steps); tokens: LongTensor [B, T'', H].
    Returns (fraction: [B, T'] masked fraction of each step's frames, selected: bool [B, T']
    (fraction > ``mask_threshold``), tokens: [B, T', H] cut or zero-padded to T' steps), with
    T' = ``num_steps``.
    """
    b, f, t = masks.shape
    k = combine_time_steps
    fraction = masks.transpose(1, 2).reshape(b, t // k, k * f).mean(-1)[:, :num_steps]
    if tokens.shape[1] < fraction.shape[1]:
        tokens = F.pad(tokens, (0, 0, 0, fraction.shape[1] - tokens.shape[1]))
    return fraction, fraction > mask_threshold, tokens[:, : fraction.shape[1]]


def masked_token_loss(
    log_probs: torch.Tensor,
    tokens: torch.Tensor,
    masks: torch.Tensor,
    combine_time_steps: int = 8,
    mask_threshold: float = 0.8,
) -> torch.Tensor:
    """Mean NLL of the targets over steps where more than ``mask_threshold`` of the
    ``combine_time_steps`` frames were masked, averaged over codebooks.

    log_probs: [B, T', C, H]; tokens: LongTensor [B, T'', H]; masks: [B, F, T] with
    T = T' * combine_time_steps. Returns a scalar; 0 (still in the graph) when no step qualifies,
    where NeMo would give NaN.
    """
    _, selected, tokens = scored_steps(
        masks, tokens, log_probs.shape[1], combine_time_steps, mask_threshold
    )
    if not selected.any():
        return log_probs.sum() * 0.0
    lp = log_probs[selected]  # [N, C, H]
    tg = tokens[selected]  # [N, H]
    return F.nll_loss(lp, tg)  # mean over N and H == average of the per-book means
