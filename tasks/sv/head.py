"""SV heads over [B, T, D] features, both ending in an embedding scored by cosine and trained with
speechbrain's AAM softmax:

- :class:`StatsHead` (default): mean + std of the frames -> one linear layer, initialised from
  the linear probe (standardisation + LDA fitted on the training speakers' statistics), then
  fine-tuned. On the embedded corpus a head trained from random init memorises the 960 training
  utterances long before it finds the small-variance directions that carry the speaker
  (``benchmarks/sv_heads.py``); starting from LDA it keeps them.
- :class:`ECAPAHead`: speechbrain's ECAPA-TDNN, the field's standard downstream head.

Both first average frames shorter than ``frame_seconds`` up to that length (fbank's 10 ms frames
to NEST's 80 ms): per-utterance normalised log-mels have mean 0 and std 1 per band, so their
statistics only carry information once frames are averaged, and ECAPA runs 8x faster.
"""

from __future__ import annotations

import numpy as np
import torch
from nestbench.tasks.sv.probe import Probe, pool_stats
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from torch import nn

from nestbench.layers import frame_pool


class _AAMHead(nn.Module):
    """Shared: frame pooling, the cosine classifier over training speakers and the AAM loss."""

    def __init__(
        self, embedding_dim: int, num_speakers: int, margin: float, scale: float, pool: int
    ):
        super().__init__()
        self.pool = pool
        self.classifier = Classifier(embedding_dim, out_neurons=num_speakers)
        self.criterion = LogSoftmaxWrapper(AdditiveAngularMargin(margin=margin, scale=scale))

    def frames(self, x: torch.Tensor, lengths: torch.Tensor):
        """The head's input frames: x [B, T, D] pooled to at least ``frame_seconds``."""
        return frame_pool(x, lengths, self.pool)

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss(self, x: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        """AAM-softmax loss of speaker indices [B]."""
        cosine = self.classifier(self.embed(x, lengths)[:, None])  # [B, 1, C]
        return self.criterion(cosine, speakers[:, None])

    @torch.no_grad()
    def init_classifier(self, embeddings: np.ndarray, speakers: np.ndarray) -> None:
        """Each speaker's classifier row := the mean of its length-normalised embeddings [N, E]."""
        e = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True).clip(1e-12)
        rows = np.zeros((self.classifier.weight.shape[0], e.shape[1]))
        np.add.at(rows, speakers, e)
        self.classifier.weight.copy_(torch.as_tensor(rows, dtype=self.classifier.weight.dtype))


class StatsHead(_AAMHead):
    """Mean + std over frames [2D] -> Linear -> embedding [E], E = min(embedding_dim, 2D,
    speakers - 1) (the LDA's dimension)."""

    def __init__(
        self,
        hidden_size: int,
        num_speakers: int,
        embedding_dim: int = 192,
        margin: float = 0.2,
        scale: float = 30.0,
        pool: int = 1,
    ):
        dim = max(1, min(embedding_dim, 2 * hidden_size, num_speakers - 1))
        super().__init__(dim, num_speakers, margin, scale, pool)
        self.embedding = nn.Linear(2 * hidden_size, dim)

    def stats(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return pool_stats(*self.frames(x, lengths))

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], lengths [B] (frames) -> embeddings [B, E]."""
        return self.embedding(self.stats(x, lengths).to(self.embedding.weight.dtype))

    @torch.no_grad()
    def init_from_probe(self, probe: Probe) -> None:
        """embedding(s) := the probe's LDA projection of s (its first E directions)."""
        proj = probe.projection[:, : self.embedding.out_features]  # [2D, E]
        w = (proj / probe.scale[:, None]).T
        b = -(probe.mean / probe.scale) @ proj
        self.embedding.weight.copy_(torch.as_tensor(w, dtype=self.embedding.weight.dtype))
        self.embedding.bias.copy_(torch.as_tensor(b, dtype=self.embedding.bias.dtype))


class ECAPAHead(_AAMHead):
    """speechbrain's ECAPA-TDNN: frames [B, T, D] -> embeddings [B, E]."""

    def __init__(
        self,
        hidden_size: int,
        num_speakers: int,
        embedding_dim: int = 192,
        channels=(512, 512, 512, 512, 1536),
        attention_channels: int = 128,
        margin: float = 0.2,
        scale: float = 30.0,
        pool: int = 1,
    ):
        super().__init__(embedding_dim, num_speakers, margin, scale, pool)
        self.ecapa = ECAPA_TDNN(
            hidden_size,
            lin_neurons=embedding_dim,
            channels=list(channels),
            attention_channels=attention_channels,
        )

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x, lengths = self.frames(x, lengths)
        rel = lengths.to(x.dtype) / x.shape[1]
        return self.ecapa(x, rel)[:, 0]
