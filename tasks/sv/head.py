"""The SV head: speechbrain's ECAPA-TDNN over [B, T, D] features, and an AAM-softmax classifier."""

from __future__ import annotations

import torch
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN, Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper
from torch import nn


class SVHead(nn.Module):
    """Speaker embeddings and training logits.

    Args:
        hidden_size: D of the featurizer output.
        num_speakers: training speakers (classifier outputs).
        embedding_dim: E.
        channels, attention_channels: ECAPA-TDNN sizes.
        margin, scale: additive angular margin and scale of the AAM softmax.
    """

    def __init__(
        self,
        hidden_size: int,
        num_speakers: int,
        embedding_dim: int = 192,
        channels=(512, 512, 512, 512, 1536),
        attention_channels: int = 128,
        margin: float = 0.2,
        scale: float = 30.0,
    ):
        super().__init__()
        self.ecapa = ECAPA_TDNN(
            hidden_size,
            lin_neurons=embedding_dim,
            channels=list(channels),
            attention_channels=attention_channels,
        )
        self.classifier = Classifier(embedding_dim, out_neurons=num_speakers)
        self.criterion = LogSoftmaxWrapper(AdditiveAngularMargin(margin=margin, scale=scale))

    def embed(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """x [B, T, D], lengths [B] (frames) -> embeddings [B, E]."""
        rel = lengths.to(x.dtype) / x.shape[1]
        return self.ecapa(x, rel)[:, 0]

    def loss(self, x: torch.Tensor, lengths: torch.Tensor, speakers: torch.Tensor) -> torch.Tensor:
        """AAM-softmax loss of speaker indices [B]."""
        cosine = self.classifier(self.embed(x, lengths)[:, None])  # [B, 1, C]
        return self.criterion(cosine, speakers[:, None])
