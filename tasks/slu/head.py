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


def sinusoids(t: int, dim: int, device=None) -> torch.Tensor:
    """[T, dim] sinusoidal position encodings (Vaswani et al.)."""
    pos = torch.arange(t, device=device, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, device=device) * (-torch.log(torch.tensor(1e4)) / dim))
    pe = torch.zeros(t, dim, device=device)
    pe[:, 0::2] = torch.sin(pos * freq)
    pe[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return pe


class Seq2SeqHead(nn.Module):
    """NeMo SLU's design, small: the features projected to ``d_model`` (with position encodings)
    are the memory of a Transformer decoder that generates the semantics string's units.

    Tokens: 0 is padding, 1 ... V the units, V + 1 BOS, V + 2 EOS (``vocab`` = V + 3).
    """

    def __init__(self, dim: int, vocab: int, d_model: int = 128, layers: int = 2, heads: int = 4,
                 ff: int = 512, dropout: float = 0.1, max_len: int = 512):  # fmt: skip
        super().__init__()
        self.vocab, self.d_model, self.max_len = vocab, d_model, max_len
        self.bos, self.eos = vocab - 2, vocab - 1
        self.proj = nn.Linear(dim, d_model)
        self.embed = nn.Embedding(vocab, d_model, padding_idx=0)
        layer = nn.TransformerDecoderLayer(d_model, heads, ff, dropout, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.decoder = nn.TransformerDecoder(layer, layers)
        self.norm = nn.LayerNorm(d_model)
        self.out = nn.Linear(d_model, vocab)

    def memory(self, x: torch.Tensor, lengths: torch.Tensor):
        """x [B, T, D] -> memory [B, T, d_model] and its padding mask [B, T] (True = pad)."""
        m = self.proj(x) + sinusoids(x.shape[1], self.d_model, x.device)[None]
        pad = torch.arange(x.shape[1], device=x.device)[None] >= lengths.to(x.device)[:, None]
        return m, pad

    def logits(self, memory, memory_pad, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, U] (BOS first) -> next-token logits [B, U, vocab] (causal)."""
        u = tokens.shape[1]
        h = self.embed(tokens) * self.d_model**0.5 + sinusoids(u, self.d_model, tokens.device)
        causal = torch.triu(torch.ones(u, u, dtype=torch.bool, device=tokens.device), 1)
        h = self.decoder(h, memory, tgt_mask=causal, tgt_key_padding_mask=tokens == 0,
                         memory_key_padding_mask=memory_pad, tgt_is_causal=True)  # fmt: skip
        return self.out(self.norm(h))

    def loss(self, x, lengths, targets: list[torch.Tensor]) -> torch.Tensor:
        """Teacher-forced cross-entropy of each target's units followed by EOS."""
        memory, pad = self.memory(x, lengths)
        n = max(t.numel() for t in targets) + 1
        inp = torch.zeros(len(targets), n, dtype=torch.long, device=x.device)
        out = torch.zeros_like(inp)
        for i, t in enumerate(targets):
            t = t.to(x.device)
            inp[i, 0], inp[i, 1 : t.numel() + 1] = self.bos, t
            out[i, : t.numel()], out[i, t.numel()] = t, self.eos
        logits = self.logits(memory, pad, inp)
        return nn.functional.cross_entropy(logits.float().transpose(1, 2), out, ignore_index=0)

    @torch.no_grad()
    def generate(self, x, lengths, max_len: int | None = None) -> list[list[int]]:
        """Greedy decoding: per utterance its units (no BOS/EOS), at most ``max_len``."""
        memory, pad = self.memory(x, lengths)
        b = x.shape[0]
        tokens = torch.full((b, 1), self.bos, dtype=torch.long, device=x.device)
        done = torch.zeros(b, dtype=torch.bool, device=x.device)
        for _ in range(max_len or self.max_len):
            nxt = self.logits(memory, pad, tokens)[:, -1].argmax(-1)
            nxt = torch.where(done, torch.zeros_like(nxt), nxt)
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)
            done |= nxt == self.eos
            if bool(done.all()):
                break
        out = []
        for row in tokens[:, 1:].tolist():
            ids = []
            for i in row:
                if i in (0, self.eos):
                    break
                if i != self.bos:
                    ids.append(i)
            out.append(ids)
        return out
