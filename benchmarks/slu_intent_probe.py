"""Can an encoder's frames tell the intent? Plain-PyTorch/scikit-learn probes of the embedded SLU
corpus's cached features (the cache entries ``nestbench run --task slu`` uses; missing ones are
computed first).

- ``--probe``: a logistic regression (scikit-learn, C=0.1, standardised inputs) on the mean and
  standard deviation over frames of each layer and of the layer-normed layer mean: how much of
  the intent a bag of frames holds (SUPERB IC's pooled design without training the encoder).
- ``--head``: a BiLSTM (``--hidden``, one layer, after Linear + ReLU) over the layer-normed mean
  of the layers, then ``--pool`` (``max``: mean + max; ``std``: mean + std; ``mean``: mean only)
  -> dropout 0.2 -> Linear, trained with AdamW (``--lr``, weight decay 1e-2, batches of 16) for
  ``--epochs``; ``--frame-pool K`` averages K frames first. Prints train/dev/test intent accuracy
  per epoch.

Examples::

    .venv/bin/python benchmarks/slu_intent_probe.py --encoder nest-embedded --probe
    .venv/bin/python benchmarks/slu_intent_probe.py --encoder fbank --head --frame-pool 4
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils.rnn import pad_sequence

from nestbench.cache import FeatureCache, default_cache_root
from nestbench.data.embedded import ensure_embedded_corpus
from nestbench.data.manifest import read_manifest
from nestbench.encoders import load_encoder

SPLITS = ("train", "dev", "test")


def load(encoder_spec: str):
    """Per split: hidden states [N, T, D] float32 per recording, and intent ids (-1: unseen)."""
    root = ensure_embedded_corpus("default") / "slu"
    items = {s: read_manifest(root / f"{s}_manifest.json") for s in SPLITS}
    enc = load_encoder(encoder_spec)
    cache = FeatureCache(
        default_cache_root() / "features",
        enc.identity(),
        layers=None,
        preprocessing={"sample_rate": enc.sample_rate},
    )
    cache.build([it for s in SPLITS for it in items[s]], enc, progress=False)
    feats = {
        s: [torch.from_numpy(np.asarray(cache.load(it), dtype=np.float32)) for it in its]
        for s, its in items.items()
    }
    intents = sorted({(it["scenario"], it["action"]) for it in items["train"]})
    index = {k: i for i, k in enumerate(intents)}
    labels = {
        s: torch.tensor([index.get((it["scenario"], it["action"]), -1) for it in its])
        for s, its in items.items()
    }
    return feats, labels, len(intents)


def mean_layer(x: torch.Tensor) -> torch.Tensor:
    """[N, T, D] -> [T, D]: the mean of the parameter-free layer-normed layers."""
    return F.layer_norm(x, x.shape[-1:]).mean(0)


def probe(feats, labels) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    def stats(x):
        return np.concatenate([x.mean(0).numpy(), x.std(0).numpy()])

    n = feats["train"][0].shape[0]
    for layer in ["mean", *range(n)]:
        pick = mean_layer if layer == "mean" else (lambda x, i=layer: x[i])
        pooled = {s: np.stack([stats(pick(x)) for x in fs]) for s, fs in feats.items()}
        scaler = StandardScaler().fit(pooled["train"])
        clf = LogisticRegression(max_iter=2000, C=0.1)
        clf.fit(scaler.transform(pooled["train"]), labels["train"].numpy())
        acc = {
            s: 100 * float((clf.predict(scaler.transform(pooled[s])) == labels[s].numpy()).mean())
            for s in ("train", "test")
        }
        print(f"layer {layer}: train {acc['train']:.1f}%  test {acc['test']:.1f}%", flush=True)


class LSTMIntent(nn.Module):
    """x [B, T, D], lengths [B] -> intent logits [B, I]."""

    def __init__(self, dim: int, hidden: int, intents: int, pool: str):
        super().__init__()
        self.pool = pool
        self.proj = nn.Linear(dim, hidden)
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True, bidirectional=True)
        self.out = nn.Sequential(nn.Dropout(0.2), nn.Linear(4 * hidden, intents))

    def forward(self, x, lengths):
        h = nn.utils.rnn.pack_padded_sequence(
            torch.relu(self.proj(x)), lengths, batch_first=True, enforce_sorted=False
        )
        h, _ = nn.utils.rnn.pad_packed_sequence(self.lstm(h)[0], batch_first=True)
        m = (torch.arange(h.shape[1])[None] < lengths[:, None]).float()[..., None]
        mean = (h * m).sum(1) / lengths[:, None]
        if self.pool == "max":
            other = h.masked_fill(m == 0, float("-inf")).amax(1)
        elif self.pool == "std":
            other = (((h - mean[:, None]) ** 2 * m).sum(1) / lengths[:, None]).clamp_min(1e-6)
            other = other.sqrt()
        else:
            other = mean
        return self.out(torch.cat([mean, other], -1))


def train_head(feats, labels, intents: int, args) -> None:
    torch.manual_seed(args.seed)
    xs = {}
    for s, fs in feats.items():
        out = []
        for x in fs:
            x = mean_layer(x)
            if args.frame_pool > 1:
                x = F.avg_pool1d(x.T[None], args.frame_pool, args.frame_pool, ceil_mode=True)
                x = x[0].T
            out.append(x)
        xs[s] = out
    model = LSTMIntent(xs["train"][0].shape[1], args.hidden, intents, args.pool)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-2)

    def epoch(split: str, train: bool) -> float:
        model.train(train)
        order = torch.randperm(len(xs[split])) if train else torch.arange(len(xs[split]))
        right = 0
        for i in range(0, len(order), 16):
            idx = order[i : i + 16].tolist()
            batch = [xs[split][j] for j in idx]
            lengths = torch.tensor([b.shape[0] for b in batch])
            target = labels[split][idx]
            with torch.set_grad_enabled(train):
                logits = model(pad_sequence(batch, batch_first=True), lengths)
                loss = F.cross_entropy(logits, target.clamp_min(0))
            if train:
                opt.zero_grad()
                loss.backward()
                opt.step()
            right += int((logits.argmax(-1) == target).sum())
        return 100 * right / len(order)

    t0 = time.perf_counter()
    for e in range(args.epochs):
        tr, dv, te = epoch("train", True), epoch("dev", False), epoch("test", False)
        print(f"epoch {e}: train {tr:.1f}%  dev {dv:.1f}%  test {te:.1f}%  "
              f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="nest-embedded")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--head", action="store_true")
    ap.add_argument("--pool", default="max", choices=("max", "std", "mean"))
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--frame-pool", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    feats, labels, intents = load(args.encoder)
    print(f"{args.encoder}: {len(feats['train'])} training recordings, {intents} intents")
    if args.probe:
        probe(feats, labels)
    if args.head:
        train_head(feats, labels, intents, args)
    if not (args.probe or args.head):
        ap.error("give --probe and/or --head")


if __name__ == "__main__":
    main()
