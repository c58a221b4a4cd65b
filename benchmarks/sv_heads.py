"""Which trained SV head at least matches the training-free probe? A plain-PyTorch sweep.

For one frozen encoder (``--encoder nest-embedded`` or ``fbank``) this loads the cached hidden
states of the embedded corpus's SV train/dev/test splits (the same cache entries ``nestbench run``
uses; missing ones are computed first) and

- scores the probe (:mod:`nestbench.tasks.sv.probe`: mean + std pooling, standardisation, LDA on
  the training speakers, cosine) on the featurizer output with uniform layer weights, with and
  without the featurizer's parameter-free layer norm;
- trains each selected head setup (``--setups``; ``--list`` shows them) on the featurizer output
  (softmax-weighted sum of all hidden states, zero-initialised logits trained jointly at their own
  learning rate), with AAM softmax, early stopping on dev EER, and reports the test EER of the
  best-dev epoch (with a bootstrap 95% interval), the epochs, the training seconds, the learned
  layer weights and the probe's test EER on those learned weights.

Options of the whole invocation: ``--pool K`` average-pools K encoder frames first (fbank at 10 ms:
``--pool 8`` gives NEST's 80 ms); ``--whiten EPS`` PCA-whitens each layer's frames with the mean
and covariance of all training frames (eigenvalues floored at EPS x the largest), a fixed linear
map applied before the featurizer. Result names get ``@p<K>`` / ``@w<EPS>`` suffixes.

Head setups (``Setup``; ``--set key=value`` overrides a field of every selected setup, ``--tag``
names the variant): ``ecapa`` (speechbrain ECAPA-TDNN, as tasks/sv/head.py), ``stats`` (mean + std
pooling -> BN -> dropout -> Linear -> BN; ``whiten_stats`` whitens the pooled statistics each
epoch; ``lda_init`` initialises the Linear from the probe and the AAM classifier from the speaker
means, and evaluates that starting point as epoch 0), ``tdnn`` (a 5-layer x-vector). All train with
AAM softmax, AdamW (featurizer logits at ``featurizer_lr``, no weight decay), gradient clipping 5,
and early stopping on the dev EER (``patience``), within ``--time-cap`` seconds.

Every finished run is appended as one JSON line to ``--out`` (default
``/tmp/svexp/results_<encoder>.jsonl``); a setup (name + seed) already there is skipped, so an
interrupted sweep resumes. ``--summary`` prints the table of what is there and exits.

Examples::

    .venv/bin/python benchmarks/sv_heads.py --encoder nest-embedded --setups probe,ecapa,stats
    .venv/bin/python benchmarks/sv_heads.py --encoder fbank --pool 8 --setups probe,stats
    .venv/bin/python benchmarks/sv_heads.py --encoder nest-embedded --summary
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from nestbench.tasks.sv.probe import fit_probe, pool_stats, probe_scores
from torch import nn
from torch.nn import functional as F

from nestbench.cache import FeatureCache, default_cache_root
from nestbench.data.manifest import read_manifest
from nestbench.featurizer import Featurizer
from nestbench.metrics.sv import bootstrap_eer, cosine_scores, eer

# ---------------------------------------------------------------------------------------------
# setups


@dataclasses.dataclass(frozen=True)
class Setup:
    """One head configuration. Times are in seconds, ``pool`` in encoder frames."""

    head: str = "ecapa"  # ecapa | stats | tdnn
    emb: int = 192  # embedding size E
    channels: tuple = (256, 256, 256, 256, 768)  # ecapa
    attention: int = 64  # ecapa attention channels
    tdnn: int = 256  # tdnn channels (5 frame layers: C, C, C, C, 2C then stats pooling)
    hidden: int = 0  # stats: 0 = pooled stats -> Linear -> BN; >0 adds a hidden ReLU layer
    whiten_stats: float = 0.0  # stats: >0 PCA-whitens the pooled stats (floor x mean eigenvalue)
    lda_init: bool = False  # stats: embedding = a Linear initialised to the probe's projection
    dropout: float = 0.0  # on the pooled statistics (stats/tdnn) before the embedding layer
    input_dropout: float = 0.0  # element dropout on the featurizer output (all heads)
    layer_norm: bool = False  # featurizer's parameter-free LayerNorm of each layer
    crop: float | None = 3.0  # training crop seconds; None = whole utterances
    specaug: bool = False  # time masks (2 x up to 10% of frames) + feature masks (2 x D/10)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    featurizer_lr: float = 0.01
    margin: float = 0.2
    scale: float = 30.0
    batch: int = 64
    max_epochs: int = 30
    patience: int = 6
    schedule: str = "constant"  # constant | cosine (over max_epochs)


BASE = Setup()
SETUPS: dict[str, Setup] = {
    # today's head (tasks/sv/head.py with configs/tasks/sv.yaml), featurizer at its own lr
    "ecapa": BASE,
    "ecapa_ln": dataclasses.replace(BASE, layer_norm=True),
    "ecapa_drop": dataclasses.replace(BASE, input_dropout=0.2, weight_decay=1e-2),
    "ecapa_aug": dataclasses.replace(BASE, specaug=True, input_dropout=0.1, weight_decay=1e-2),
    "ecapa_small_aug": dataclasses.replace(
        BASE,
        channels=(128, 128, 128, 128, 384),
        attention=32,
        specaug=True,
        input_dropout=0.1,
        weight_decay=1e-2,
    ),
    "ecapa_6s": dataclasses.replace(BASE, crop=6.0),
    "ecapa_whole": dataclasses.replace(BASE, crop=None),
    # pooled statistics -> linear embedding
    "stats": dataclasses.replace(BASE, head="stats", emb=256, crop=None),
    "stats_ln": dataclasses.replace(BASE, head="stats", emb=256, crop=None, layer_norm=True),
    "stats_drop": dataclasses.replace(
        BASE, head="stats", emb=256, crop=None, dropout=0.5, weight_decay=1e-2
    ),
    "stats_drop_ln": dataclasses.replace(
        BASE, head="stats", emb=256, crop=None, dropout=0.5, weight_decay=1e-2, layer_norm=True
    ),
    "stats_drop_3s": dataclasses.replace(
        BASE, head="stats", emb=256, crop=3.0, dropout=0.5, weight_decay=1e-2
    ),
    "stats_drop_6s": dataclasses.replace(
        BASE, head="stats", emb=256, crop=6.0, dropout=0.5, weight_decay=1e-2
    ),
    "stats_drop_aug": dataclasses.replace(
        BASE, head="stats", emb=256, crop=None, dropout=0.5, weight_decay=1e-2, specaug=True
    ),
    "stats_drop_192": dataclasses.replace(
        BASE, head="stats", emb=192, crop=None, dropout=0.5, weight_decay=1e-2
    ),
    "stats_hidden": dataclasses.replace(
        BASE, head="stats", emb=256, hidden=512, crop=None, dropout=0.5, weight_decay=1e-2
    ),
    "stats_white": dataclasses.replace(
        BASE, head="stats", emb=256, crop=None, dropout=0.0, weight_decay=1e-2, whiten_stats=1e-6
    ),
    "stats_white_drop": dataclasses.replace(
        BASE, head="stats", emb=256, crop=None, dropout=0.3, weight_decay=1e-2, whiten_stats=1e-6
    ),
    "stats_lda": dataclasses.replace(
        BASE, head="stats", emb=159, crop=None, lda_init=True, lr=1e-4, weight_decay=0.0
    ),
    "stats_lda_drop": dataclasses.replace(
        BASE, head="stats", emb=159, crop=None, lda_init=True, lr=1e-4, dropout=0.2
    ),
    # a small x-vector TDNN
    "tdnn": dataclasses.replace(BASE, head="tdnn", emb=256, tdnn=256, dropout=0.3),
    "tdnn_aug": dataclasses.replace(
        BASE,
        head="tdnn",
        emb=256,
        tdnn=256,
        dropout=0.3,
        specaug=True,
        input_dropout=0.1,
        weight_decay=1e-2,
    ),
}
SETUPS["tdnn_aug_whole"] = dataclasses.replace(SETUPS["tdnn_aug"], crop=None)


def parse_overrides(pairs: list[str]) -> dict:
    """``key=value`` pairs (values as JSON, else strings) -> dict of Setup fields."""
    fields = {f.name: f for f in dataclasses.fields(Setup)}
    out = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown setup field {key!r}; fields: {', '.join(fields)}")
        try:
            v = json.loads(value)
        except json.JSONDecodeError:
            v = value
        out[key] = tuple(v) if isinstance(v, list) else v
    return out


# ---------------------------------------------------------------------------------------------
# data


def _resolve_trials(path: Path, items: list[dict]):
    """[(label, enroll index, test index)] of a trial list, names resolved against ``items``
    by the SV task's own resolution."""
    from nestbench.tasks.sv.task import _resolve_trials as resolve

    index = {id(it): i for i, it in enumerate(items)}
    return [(lab, index[id(e)], index[id(t)]) for lab, e, t, *_ in resolve(path, items)]


def _find(folder: Path, patterns: tuple[str, ...], split: str) -> Path:
    for p in patterns:
        if (folder / p.format(split=split)).is_file():
            return folder / p.format(split=split)
    raise SystemExit(f"{folder}: no {patterns[0].format(split=split)} or similar")


class Data:
    """Features of every SV utterance in memory: ``feats[split][i]`` float16 [N, T, D]."""

    def __init__(self, encoder_spec: str, pool: int, data_dir: str | None, whiten: float = 0.0):
        from nestbench.encoders import load_encoder

        if data_dir:
            root = Path(data_dir)
        else:
            from nestbench.data.embedded import ensure_embedded_corpus

            root = ensure_embedded_corpus("default")
        folder = root / "sv" if (root / "sv").is_dir() else root
        names = ("{split}.json", "{split}_manifest.json", "manifest_{split}.json")
        self.items = {s: read_manifest(_find(folder, names, s)) for s in ("train", "dev", "test")}
        trial_names = ("{split}_trials.txt", "trials_{split}.txt")
        self.trials = {
            s: np.array(_resolve_trials(_find(folder, trial_names, s), self.items[s]))
            for s in ("dev", "test")
        }
        enc = load_encoder(encoder_spec)
        self.frame_seconds = enc.frame_shift / enc.sample_rate * pool
        self.pool = pool
        cache = FeatureCache(
            default_cache_root() / "features",
            enc.identity(),
            layers=None,
            preprocessing={"sample_rate": enc.sample_rate},
        )
        everything = [it for s in ("train", "dev", "test") for it in self.items[s]]
        t0 = time.perf_counter()
        built = cache.build(everything, enc, progress=False)
        if built:
            log(f"cached {built} utterances in {time.perf_counter() - t0:.0f} s")
        self.feats = {}
        for split, items in self.items.items():
            out = []
            for it in items:
                x = torch.from_numpy(np.asarray(cache.load(it), dtype=np.float32))  # [N, T, D]
                if pool > 1:  # average pooling over time; a partial last window is kept
                    x = F.avg_pool1d(
                        x.transpose(1, 2), pool, pool, ceil_mode=True, count_include_pad=False
                    )
                    x = x.transpose(1, 2)
                out.append(x.to(torch.float16).contiguous())
            self.feats[split] = out
        if whiten > 0:
            self._whiten(whiten)
        speakers = sorted({str(it["label"]) for it in self.items["train"]})
        index = {s: i for i, s in enumerate(speakers)}
        self.labels = torch.tensor([index[str(it["label"])] for it in self.items["train"]])
        self.num_speakers = len(speakers)
        self.num_inputs, _, self.dim = self.feats["train"][0].shape
        frames = [x.shape[1] for x in self.feats["train"]]
        log(
            f"{encoder_spec} pool {pool}: {self.num_inputs} x D={self.dim}, frames of "
            f"{1000 * self.frame_seconds:.0f} ms, train {len(frames)} utts "
            f"({min(frames)}-{max(frames)} frames), {self.num_speakers} speakers"
        )

    def _whiten(self, eps: float) -> None:
        """PCA-whiten (ZCA) each layer with the mean and covariance of all training frames.

        Eigenvalues below ``eps`` times the largest are raised to it. A fixed, invertible (for
        eps -> 0) linear map per layer, so it removes no information; it only fixes the
        conditioning that gradient training struggles with.
        """
        frames = torch.cat([x.double() for x in self.feats["train"]], dim=1)  # [N, F, D]
        maps = []
        for i in range(frames.shape[0]):
            x = frames[i]
            mean = x.mean(0)
            x = x - mean
            evals, evecs = torch.linalg.eigh(x.T @ x / x.shape[0])
            evals = evals.clamp_min(eps * float(evals.max()))
            maps.append((mean, evecs @ torch.diag(evals.rsqrt()) @ evecs.T))
        for split, feats in self.feats.items():
            out = []
            for x in feats:
                y = torch.stack([(x[i].double() - m) @ w for i, (m, w) in enumerate(maps)])
                out.append(y.to(torch.float16).contiguous())
            self.feats[split] = out
        log(f"whitened each layer (eigenvalue floor {eps:g} x the largest)")


def batch_of(feats: list[torch.Tensor], idx, crop: int | None, rng: np.random.Generator):
    """[N, B, T, D] float32 padded hidden states and lengths [B] (random crops of ``crop``)."""
    pieces = []
    for i in idx:
        x = feats[i]
        t = x.shape[1]
        if crop is not None and t > crop:
            s = int(rng.integers(0, t - crop + 1))
            x = x[:, s : s + crop]
        pieces.append(x)
    lengths = torch.tensor([p.shape[1] for p in pieces])
    n, _, d = pieces[0].shape
    out = torch.zeros(n, len(pieces), int(lengths.max()), d)
    for b, p in enumerate(pieces):
        out[:, b, : p.shape[1]] = p
    return out, lengths


def eval_batches(feats: list[torch.Tensor], size: int = 32):
    """Index batches of similar length (sorted), for whole-utterance inference."""
    order = sorted(range(len(feats)), key=lambda i: feats[i].shape[1])
    return [order[i : i + size] for i in range(0, len(order), size)]


def train_batches(feats, batch: int, whole: bool, rng: np.random.Generator):
    """Shuffled index batches; for whole utterances, bucketed by (noisy) length."""
    n = len(feats)
    if not whole:
        perm = rng.permutation(n)
        return [perm[i : i + batch] for i in range(0, n, batch)]
    lengths = np.array([f.shape[1] for f in feats], dtype=float)
    order = np.argsort(lengths * rng.uniform(0.8, 1.2, n))
    batches = [order[i : i + batch] for i in range(0, n, batch)]
    return [batches[i] for i in rng.permutation(len(batches))]


# ---------------------------------------------------------------------------------------------
# heads


def _mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    return torch.arange(t)[None, :] < lengths[:, None]  # [B, T]


class StatsHead(nn.Module):
    """pool_stats -> BN -> dropout -> [Linear -> ReLU -> BN -> dropout ->] Linear -> BN.

    The first BatchNorm standardises the statistics (as the probe does): their scales differ by
    orders of magnitude between dimensions (NEST's layer 0 dominates), which a plain Linear layer
    trained with Adam copes with badly.
    """

    def __init__(self, d: int, s: Setup):
        super().__init__()
        if s.lda_init:  # pool_stats -> dropout -> Linear(2D, E); see init_from_probe
            layers = [nn.Dropout(s.dropout), nn.Linear(2 * d, s.emb)]
            self.net = nn.Sequential(*layers)
            self.whiten = 0.0
            return
        layers: list[nn.Module] = [nn.BatchNorm1d(2 * d), nn.Dropout(s.dropout)]
        width = 2 * d
        if s.hidden:
            layers += [nn.Linear(width, s.hidden), nn.ReLU(), nn.BatchNorm1d(s.hidden)]
            layers += [nn.Dropout(s.dropout)]
            width = s.hidden
        layers += [nn.Linear(width, s.emb), nn.BatchNorm1d(s.emb)]
        self.net = nn.Sequential(*layers)
        self.whiten = s.whiten_stats
        self.register_buffer("w_mean", torch.zeros(2 * d))
        self.register_buffer("w_map", torch.eye(2 * d))

    @torch.no_grad()
    def init_from_probe(self, probe) -> None:
        """Linear = the probe's standardisation + LDA projection (the first E directions)."""
        lin = self.net[-1]
        proj = torch.from_numpy(probe.projection[:, : lin.out_features]).float()  # [2D, E]
        scale = torch.from_numpy(probe.scale).float()
        mean = torch.from_numpy(probe.mean).float()
        lin.weight.copy_((proj / scale[:, None]).T)
        lin.bias.copy_(-(mean / scale) @ proj)

    @torch.no_grad()
    def refit(self, stats: torch.Tensor) -> None:
        """Whitening of pooled statistics [U, 2D] of the training set (float64 eigh)."""
        x = stats.double()
        mean = x.mean(0)
        x = x - mean
        evals, evecs = torch.linalg.eigh(x.T @ x / x.shape[0])
        evals = evals.clamp_min(self.whiten * float(evals.mean()))
        self.w_mean.copy_(mean.float())
        self.w_map.copy_((evecs @ torch.diag(evals.rsqrt()) @ evecs.T).float())

    def forward(self, x, lengths):
        z = pool_stats(x, lengths)
        if self.whiten:
            z = (z - self.w_mean) @ self.w_map
        return self.net(z)


class TDNNHead(nn.Module):
    """x-vector: 5 frame-level TDNN layers (ReLU + BN) -> mean+std -> dropout -> Linear -> BN."""

    def __init__(self, d: int, s: Setup):
        super().__init__()
        c = s.tdnn
        spec = [(d, c, 5, 1), (c, c, 3, 2), (c, c, 3, 3), (c, c, 1, 1), (c, 2 * c, 1, 1)]
        self.frames = nn.ModuleList(
            nn.Sequential(
                nn.Conv1d(i, o, k, dilation=dil, padding=dil * (k - 1) // 2),
                nn.ReLU(),
                nn.BatchNorm1d(o),
            )
            for i, o, k, dil in spec
        )
        self.embed = nn.Sequential(
            nn.Dropout(s.dropout), nn.Linear(4 * c, s.emb), nn.BatchNorm1d(s.emb)
        )

    def forward(self, x, lengths):
        m = _mask(lengths, x.shape[1])[:, None].to(x.dtype)  # [B, 1, T]
        h = x.transpose(1, 2)
        for layer in self.frames:
            h = layer(h * m)  # zero the padding so it does not leak through the convolutions
        return self.embed(pool_stats(h.transpose(1, 2), lengths))


class EcapaHead(nn.Module):
    """speechbrain's ECAPA-TDNN as in tasks/sv/head.py (relative lengths for its pooling)."""

    def __init__(self, d: int, s: Setup):
        super().__init__()
        from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

        self.ecapa = ECAPA_TDNN(
            d, lin_neurons=s.emb, channels=list(s.channels), attention_channels=s.attention
        )

    def forward(self, x, lengths):
        return self.ecapa(x, lengths.to(x.dtype) / x.shape[1])[:, 0]


class Model(nn.Module):
    """Featurizer -> (augmentation) -> head -> embedding; AAM softmax for training."""

    def __init__(self, num_inputs: int, d: int, num_speakers: int, s: Setup):
        super().__init__()
        from speechbrain.lobes.models.ECAPA_TDNN import Classifier
        from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

        self.setup = s
        self.featurizer = Featurizer(num_inputs, d, layer_norm=s.layer_norm)
        self.input_dropout = nn.Dropout(s.input_dropout)
        self.head = {"ecapa": EcapaHead, "stats": StatsHead, "tdnn": TDNNHead}[s.head](d, s)
        self.classifier = Classifier(s.emb, out_neurons=num_speakers)
        self.criterion = LogSoftmaxWrapper(AdditiveAngularMargin(margin=s.margin, scale=s.scale))

    def embed(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """hidden [N, B, T, D], lengths [B] -> [B, E]."""
        x = self.featurizer(hidden)
        if self.training:
            if self.setup.specaug:
                x = specaug(x, lengths)
            x = self.input_dropout(x)
        x = x * _mask(lengths, x.shape[1])[..., None].to(x.dtype)
        return self.head(x, lengths)

    def loss(self, hidden, lengths, speakers):
        cosine = self.classifier(self.embed(hidden, lengths)[:, None])
        return self.criterion(cosine, speakers[:, None])


def specaug(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Two time masks of up to 10% of each utterance and two feature masks of up to D/10."""
    b, t, d = x.shape
    keep = torch.ones(b, t, d)
    for i in range(b):
        n = int(lengths[i])
        for _ in range(2):
            w = int(torch.randint(0, max(1, n // 10) + 1, ()))
            s = int(torch.randint(0, max(1, n - w) + 1, ()))
            keep[i, s : s + w] = 0
            w = int(torch.randint(0, d // 10 + 1, ()))
            s = int(torch.randint(0, d - w + 1, ()))
            keep[i, :, s : s + w] = 0
    return x * keep


# ---------------------------------------------------------------------------------------------
# evaluation


def trial_eer(emb: np.ndarray, trials: np.ndarray) -> tuple[float, np.ndarray]:
    scores = cosine_scores(emb[trials[:, 1]], emb[trials[:, 2]])
    return 100 * eer(scores, trials[:, 0]), scores


@torch.no_grad()
def embed_split(model: Model, feats) -> np.ndarray:
    model.eval()
    out = np.zeros((len(feats), model.setup.emb), dtype=np.float32)
    for idx in eval_batches(feats):
        hidden, lengths = batch_of(feats, idx, None, np.random.default_rng(0))
        out[idx] = model.embed(hidden, lengths).numpy()
    return out


@torch.no_grad()
def pooled(feats, weights: torch.Tensor, layer_norm: bool) -> np.ndarray:
    """[U, 2D] pool_stats of the weighted sum of each utterance's hidden states."""
    out = []
    for idx in eval_batches(feats, 64):
        hidden, lengths = batch_of(feats, idx, None, np.random.default_rng(0))
        if layer_norm:
            hidden = F.layer_norm(hidden, hidden.shape[-1:])
        x = torch.einsum("n,nbtd->btd", weights, hidden)
        out.append((idx, pool_stats(x, lengths).double().numpy()))
    res = np.zeros((len(feats), out[0][1].shape[1]))
    for idx, v in out:
        res[idx] = v
    return res


def probe_eer(data: Data, weights: torch.Tensor, layer_norm: bool) -> dict:
    """The probe's dev and test EER (percent) on the featurizer output with these weights."""
    t0 = time.perf_counter()
    train = pooled(data.feats["train"], weights, layer_norm)
    res = {}
    for split in ("dev", "test"):
        v = pooled(data.feats[split], weights, layer_norm)
        tr = data.trials[split]
        scores = probe_scores(train, data.labels.numpy(), v[tr[:, 1]], v[tr[:, 2]])
        res[f"{split}_eer"] = 100 * eer(scores, tr[:, 0])
        if split == "test":
            lo, hi = bootstrap_eer(scores, tr[:, 0], n_resamples=1000)
            res["test_ci95"] = [100 * lo, 100 * hi]
    res["seconds"] = time.perf_counter() - t0
    return res


# ---------------------------------------------------------------------------------------------
# training


def train_one(data: Data, s: Setup, seed: int, time_cap: float) -> dict:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = Model(data.num_inputs, data.dim, data.num_speakers, s)
    featurizer = list(model.featurizer.parameters())
    others = [p for n, p in model.named_parameters() if not n.startswith("featurizer.")]
    opt = torch.optim.AdamW(
        [
            {"params": others, "lr": s.lr, "weight_decay": s.weight_decay},
            {"params": featurizer, "lr": s.featurizer_lr, "weight_decay": 0.0},
        ]
    )
    feats = data.feats["train"]
    crop = None if s.crop is None else max(1, round(s.crop / data.frame_seconds))
    history = []
    best = {"dev_eer": float("inf")}
    best_state = None
    if s.lda_init:  # start from the probe: projection and class means as classifier weights
        stats = pooled(feats, model.featurizer.weights(), s.layer_norm)
        probe = fit_probe(stats, data.labels.numpy())
        model.head.init_from_probe(probe)
        emb = probe.transform(stats)[:, : s.emb]
        centres = np.zeros((data.num_speakers, s.emb))
        np.add.at(centres, data.labels.numpy(), emb / np.linalg.norm(emb, axis=1, keepdims=True))
        with torch.no_grad():
            model.classifier.weight.copy_(torch.from_numpy(centres).float())
        dev, _ = trial_eer(embed_split(model, data.feats["dev"]), data.trials["dev"])
        history.append({"epoch": 0, "loss": float("nan"), "dev_eer": dev})
        log(f"  epoch  0 (probe init, shrinkage {probe.shrinkage:g}) dev EER {dev:5.2f}")
        best = {"dev_eer": dev, "epoch": 0}
        best_state = copy.deepcopy(model.state_dict())
    steps_per_epoch = math.ceil(len(feats) / s.batch)
    sched = None
    if s.schedule == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, s.max_epochs * steps_per_epoch)
    start, bad = time.perf_counter(), 0
    for epoch in range(s.max_epochs):
        if s.whiten_stats:  # whiten with the statistics of the current featurizer
            with torch.no_grad():
                w = model.featurizer.weights()
                stats = pooled(feats, w, s.layer_norm)
            model.head.refit(torch.from_numpy(stats))
        model.train()
        losses = []
        for idx in train_batches(feats, s.batch, s.crop is None, rng):
            if len(idx) < 2:  # BatchNorm needs two
                continue
            hidden, lengths = batch_of(feats, idx, crop, rng)
            loss = model.loss(hidden, lengths, data.labels[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            if sched is not None:
                sched.step()
            losses.append(float(loss.detach()))
        dev, _ = trial_eer(embed_split(model, data.feats["dev"]), data.trials["dev"])
        elapsed = time.perf_counter() - start
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "dev_eer": dev})
        log(
            f"  epoch {epoch + 1:2d} loss {np.mean(losses):.3f} dev EER {dev:5.2f} ({elapsed:.0f} s)"
        )
        if dev < best["dev_eer"]:
            best = {"dev_eer": dev, "epoch": epoch + 1}
            best_state, bad = copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
        if bad >= s.patience:
            break
        if elapsed > time_cap:
            log(f"  stopped at the time cap ({time_cap:.0f} s)")
            best["capped"] = True
            break
    seconds = time.perf_counter() - start
    model.load_state_dict(best_state)
    test, scores = trial_eer(embed_split(model, data.feats["test"]), data.trials["test"])
    lo, hi = bootstrap_eer(scores, data.trials["test"][:, 0], n_resamples=1000)
    weights = model.featurizer.weights()
    return {
        **best,
        "test_eer": test,
        "test_ci95": [100 * lo, 100 * hi],
        "epochs": len(history),
        "seconds": seconds,
        "final_loss": history[-1]["loss"],
        "layer_weights": [round(float(w), 4) for w in weights],
        "probe_learned": probe_eer(data, weights, s.layer_norm),
        "params": sum(p.numel() for p in model.parameters()),
        "history": history,
    }


# ---------------------------------------------------------------------------------------------
# driver


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_results(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summary(rows: list[dict]) -> str:
    head = (
        f"{'setup':28s} {'seed':>4s} {'dev':>6s} {'test':>6s} {'test 95% CI':>13s} "
        f"{'ep':>3s} {'sec':>5s} {'loss':>5s} {'probe@w':>7s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        ci = r.get("test_ci95") or [float("nan")] * 2
        pl = r.get("probe_learned", {}).get("test_eer", float("nan"))
        loss = r.get("final_loss", float("nan"))
        lines.append(
            f"{r['name']:28s} {r.get('seed', 0):4d} {r['dev_eer']:6.2f} {r['test_eer']:6.2f} "
            f"{ci[0]:6.2f}-{ci[1]:5.2f} {r.get('epochs', 0):3d} {r.get('seconds', 0):5.0f} "
            f"{loss:5.2f} {pl:7.2f}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--encoder", default="nest-embedded")
    ap.add_argument("--pool", type=int, default=1, help="average-pool this many frames first")
    ap.add_argument("--data", default=None, help="SV data folder (default: embedded corpus)")
    ap.add_argument(
        "--whiten",
        type=float,
        default=0.0,
        help="PCA-whiten each layer first, eigenvalue floor WHITEN x the largest (0: off)",
    )
    ap.add_argument("--setups", default="probe,ecapa,stats_drop", help="comma-separated names")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--set", nargs="*", default=[], help="key=value overrides of every setup")
    ap.add_argument("--tag", default="", help="suffix of the result names (with --set)")
    ap.add_argument("--time-cap", type=float, default=180.0, help="seconds per training run")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="results JSONL (default /tmp/svexp/...)")
    ap.add_argument("--list", action="store_true", help="print the setups and exit")
    ap.add_argument("--summary", action="store_true", help="print the results table and exit")
    args = ap.parse_args(argv)
    if args.list:
        for name, s in SETUPS.items():
            diff = {k: v for k, v in dataclasses.asdict(s).items() if getattr(BASE, k) != v}
            print(f"{name:18s} {diff}")
        return 0
    torch.set_num_threads(args.threads)
    out = Path(args.out or f"/tmp/svexp/results_{args.encoder}.jsonl")
    out.parent.mkdir(parents=True, exist_ok=True)
    if args.summary:
        print(summary(read_results(out)))
        return 0
    overrides = parse_overrides(args.set)
    pool_tag = (f"@p{args.pool}" if args.pool > 1 else "") + (
        f"@w{args.whiten:g}" if args.whiten > 0 else ""
    )
    done = {(r["name"], r.get("seed", 0)) for r in read_results(out)}
    data = Data(args.encoder, args.pool, args.data, args.whiten)
    for name in args.setups.split(","):
        for seed in [int(x) for x in args.seeds.split(",")]:
            full = f"{name}{args.tag}{pool_tag}"
            if (full, seed) in done:
                log(f"{full} seed {seed}: done already, skipped")
                continue
            if name == "probe":
                rows = []
                uniform = torch.full((data.num_inputs,), 1.0 / data.num_inputs)
                for ln in (False, True):
                    r = probe_eer(data, uniform, ln)
                    rows.append({"name": f"probe{'_ln' if ln else ''}{args.tag}{pool_tag}", **r})
                    log(f"{rows[-1]['name']}: dev {r['dev_eer']:.2f} test {r['test_eer']:.2f}")
                rows[0]["name"] = full
                for r in rows:
                    r["seed"] = seed
                with out.open("a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in rows)
                continue
            if name not in SETUPS:
                raise SystemExit(f"unknown setup {name!r}; --list shows them")
            s = dataclasses.replace(SETUPS[name], **overrides)
            log(f"{full} seed {seed}: {s}")
            r = train_one(data, s, seed, args.time_cap)
            row = {"name": full, "seed": seed, "encoder": args.encoder, "pool": args.pool}
            row.update(r, setup=dataclasses.asdict(s))
            log(
                f"{full} seed {seed}: best epoch {r['epoch']} dev {r['dev_eer']:.2f} test "
                f"{r['test_eer']:.2f} [{r['test_ci95'][0]:.2f}, {r['test_ci95'][1]:.2f}] in "
                f"{r['seconds']:.0f} s; probe on its weights {r['probe_learned']['test_eer']:.2f}"
            )
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
    print(summary(read_results(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
