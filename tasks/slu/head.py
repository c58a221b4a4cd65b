"""SLU heads on the featurizer output x [B, T, D].

``SLUHead`` (the default, SUPERB's IC + SF designs together): a CTC branch
(:class:`nestbench.tasks.asr.head.CTCHead`) over subword units with slot tags around each
entity's words, and an utterance-level intent classifier on its LSTM states (or on x itself):
``pooling`` ``max`` (the mean and the maximum over valid frames), ``stats`` (mean and standard
deviation) or ``attention`` (attentive statistics), then Linear -> ReLU -> Linear over the
training intents. ``Seq2SeqHead``: NeMo's design, a Transformer decoder generating the
semantics string (greedy or beam search).
"""

from __future__ import annotations

import torch
from nestbench.tasks.asr.head import CTCHead
from nestbench.tasks.sv.probe import pool_stats
from torch import nn

from nestbench.layers import valid_mask


def weighted_stats(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Mean and standard deviation of x [B, T, D] under frame weights w [B, T] (summing to 1
    over each row's valid frames) -> [B, 2D]."""
    mean = (x * w[..., None]).sum(1)
    var = (x.pow(2) * w[..., None]).sum(1) - mean.pow(2)
    return torch.cat([mean, var.clamp_min(1e-6).sqrt()], dim=-1)


class StatsPooling(nn.Module):
    """x [B, T, D], lengths [B] -> [B, 2D]: mean and std over the valid frames."""

    def forward(self, x, lengths):
        return pool_stats(x, lengths, eps=1e-6)


class MeanMaxPooling(nn.Module):
    """x [B, T, D], lengths [B] -> [B, 2D]: the mean and the maximum over the valid frames. The
    maximum passes a word's evidence from its few frames undiluted (mean and standard deviation
    spread each frame's gradient over all T), so intents are learnt far sooner."""

    def forward(self, x, lengths):
        m = valid_mask(lengths, x.shape[1], x.device).float()
        mean = (x * m[..., None]).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
        peak = x.masked_fill(m[..., None] == 0, float("-inf")).amax(1)
        return torch.cat([mean, peak], dim=-1)


class AttentivePooling(nn.Module):
    """Attentive statistics pooling: frame weights softmax(v . tanh(W x)) over valid frames."""

    def __init__(self, dim: int, hidden: int = 128):
        super().__init__()
        self.score = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1))

    def forward(self, x, lengths):
        m = valid_mask(lengths, x.shape[1], x.device).float()
        s = self.score(x).squeeze(-1).masked_fill(m == 0, float("-inf"))
        return weighted_stats(x, torch.softmax(s, dim=1))


class IntentHead(nn.Module):
    """Pooling -> Linear(2D -> hidden) -> ReLU -> dropout -> Linear(hidden -> intents)."""

    def __init__(self, dim: int, num_intents: int, hidden: int, pooling: str, dropout: float):
        super().__init__()
        pools = {"stats": StatsPooling, "max": MeanMaxPooling}
        self.pool = AttentivePooling(dim) if pooling == "attention" else pools[pooling]()
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
    """The intent classifier and the CTC branch. ``intent_input="states"`` pools the CTC
    branch's LSTM states (the words it learns to spell carry the intent; the default), and
    ``"features"`` pools the featurizer output itself (SUPERB IC's design, for encoders whose
    frames already carry words)."""

    def __init__(self, dim: int, num_intents: int, num_units: int, intent: dict, ctc: dict,
                 intent_input: str = "states"):  # fmt: skip
        super().__init__()
        if intent_input not in ("states", "features"):
            raise ValueError(f"intent_input {intent_input!r}, expected states or features")
        self.intent_input = intent_input
        self.ctc = CTCHead(dim, num_units, **ctc)
        width = self.ctc.state_size if intent_input == "states" else dim
        self.intent = IntentHead(width, num_intents, **intent)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        """x [B, T, D], lengths [B] -> intent logits [B, I], CTC log-probabilities
        [B, T x upsample, C] and their lengths [B]."""
        h = self.ctc.states(x, lengths)
        log_probs, out_lens = self.ctc.classify(h, lengths)
        pooled_input = h if self.intent_input == "states" else x
        return self.intent(pooled_input, lengths), log_probs, out_lens


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
        pad = ~valid_mask(lengths, x.shape[1], x.device)
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
    def generate(self, x, lengths, max_len: int | None = None, beam: int = 1,
                 length_penalty: float = 0.0) -> list[list[int]]:  # fmt: skip
        """Per utterance its units (no BOS/EOS), at most ``max_len``: greedy for ``beam`` 1,
        else :meth:`beam_search`."""
        if beam > 1:
            return self.beam_search(x, lengths, beam, max_len, length_penalty)
        memory, pad = self.memory(x, lengths)
        b = x.shape[0]
        tokens = torch.full((b, 1), self.bos, dtype=torch.long, device=x.device)
        done = torch.zeros(b, dtype=torch.bool, device=x.device)
        for _ in range(max_len or self.max_len):
            step = self.logits(memory, pad, tokens)[:, -1]
            step[:, 0] = step[:, self.bos] = float("-inf")  # never padding or BOS
            nxt = step.argmax(-1)
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

    @torch.no_grad()
    def beam_search(self, x, lengths, beam: int, max_len: int | None = None,
                    length_penalty: float = 0.0) -> list[list[int]]:  # fmt: skip
        """Beam search, one utterance at a time with ``beam`` hypotheses alive: each step keeps
        the best ``beam`` extensions that do not end; an ending (EOS) among the best ``beam``
        extensions is finished with the score log p / len^``length_penalty`` (len counts EOS;
        0: the plain log-probability). With ``length_penalty`` 0 it stops as soon as no alive
        hypothesis can beat the best finished one (scores only fall, so this is exact, and
        ``beam`` 1 is greedy decoding); otherwise when ``beam`` have finished. The best
        finished one is returned (the best alive one if none finished within ``max_len``)."""
        memory, pad = self.memory(x, lengths)
        limit = max_len or self.max_len
        out = []
        for b in range(x.shape[0]):
            mem, mpad = memory[b : b + 1], pad[b : b + 1]
            seqs = torch.full((1, 1), self.bos, dtype=torch.long, device=x.device)
            scores = torch.zeros(1, device=x.device)
            finished: list[tuple[float, list[int]]] = []
            for step in range(1, limit + 1):
                n = seqs.shape[0]
                lp = self.logits(mem.expand(n, -1, -1), mpad.expand(n, -1), seqs)[:, -1]
                lp = lp.float().log_softmax(-1)
                lp[:, 0] = lp[:, self.bos] = float("-inf")  # never padding or BOS
                total = (scores[:, None] + lp).flatten()
                top = total.topk(min(2 * beam, total.numel()))
                keep_rows, keep_tok, keep_scores = [], [], []
                for rank, (score, flat) in enumerate(
                    zip(top.values.tolist(), top.indices.tolist(), strict=True)
                ):
                    row, tok = divmod(flat, self.vocab)
                    if tok == self.eos:
                        if rank < beam:  # an ending among the best ``beam`` extensions
                            finished.append((score / step**length_penalty, seqs[row, 1:].tolist()))
                    elif len(keep_rows) < beam:
                        keep_rows.append(row)
                        keep_tok.append(tok)
                        keep_scores.append(score)
                if not keep_rows:
                    break
                alive = torch.tensor(keep_scores, device=x.device)
                if finished and length_penalty == 0:
                    if float(alive.max()) <= max(f[0] for f in finished):
                        break  # scores only fall: no alive hypothesis can win any more
                elif len(finished) >= beam:
                    break
                rows = torch.tensor(keep_rows, device=x.device)
                tok = torch.tensor(keep_tok, device=x.device)
                seqs = torch.cat([seqs[rows], tok[:, None]], dim=1)
                scores = alive
            if not finished:
                finished = [(float(scores[0]), seqs[0, 1:].tolist())]
            out.append(max(finished, key=lambda f: f[0])[1])
        return out
