"""The speaker-verification task.

Data (:mod:`nestbench.data.layout`: a folder's ``sv/`` sub-folder, or the folder itself): NeMo
manifests ``<split>_manifest.json`` with ``label`` = speaker for ``train``, ``dev`` and the eval
splits (``test``, and others that ``splits.json`` names), and a VoxCeleb-format trial list
``<split>_trials.txt`` (``label enroll test``) for dev and each eval split, whose paths name
manifest files by their path relative to the trial list's folder (or any trailing part of it
unique in the split).

Training: AAM softmax over the training speakers (whole utterances, or random crops of
``sv.crop_seconds``); the default stats head starts from the LDA of the training statistics
(``tasks/sv/head.py``). Dev metric: EER of the dev trials (early stopping, best checkpoint). Test: cosine scores of the test trials, EER (percent) with a
stratified bootstrap 95% interval, normalised minDCF at P_target 0.01 and 0.05, and optionally
the same after AS-norm with a cohort of training-speaker embeddings (one mean embedding per
speaker), and ``eer_probe``: the linear probe (mean + std, LDA, cosine; ``probe.py``) on the
head's input. Scores go to ``<split>_scores.txt`` in the run folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from nestbench.tasks.sv.head import ECAPAHead, StatsHead
from nestbench.tasks.sv.probe import fit_probe, pool_stats, probe_scores

from nestbench.config import spec
from nestbench.data.layout import find_manifest, find_trials
from nestbench.data.manifest import atomic_write_text
from nestbench.data.trials import TrialResolver, read_trials
from nestbench.metrics.base import Score
from nestbench.metrics.sv import as_norm, cosine_scores, eer, eer_score, min_dcf
from nestbench.task import EncoderInfo, Task, TaskError
from nestbench.windows import cut_windows


def _resolve_trials(path: Path, items: list[dict]) -> list[tuple[int, dict, dict, str, str]]:
    """(label, enroll record, test record, enroll name, test name) of each trial in ``path``."""
    by_path = {str(Path(it["audio_filepath"]).as_posix()): it for it in items}
    resolver = TrialResolver(by_path)

    def find(name: str, lineno: int) -> dict:
        found = resolver.resolve(name)
        if len(found) != 1:
            why = (
                "is in no record of the split's manifest"
                if not found
                else (f"matches {len(found)} records; use longer paths")
            )
            raise TaskError(f"{path}:{lineno}: trial name {name!r} {why}")
        return by_path[found[0]]

    return [
        (t.label, find(t.enroll, n), find(t.test, n), t.enroll, t.test)
        for n, t in enumerate(read_trials(path), start=1)
    ]


@dataclass
class SVConfig:
    """``cfg.sv`` (values: configs/tasks/sv.yaml)."""

    head: str = spec(choices=("stats", "ecapa"))
    lda_init: bool = spec()
    frame_seconds: float | None = spec(gt=0)
    crop_seconds: float | None = spec(gt=0)
    train_window_seconds: float | None = spec(gt=0)
    embedding_dim: int = spec(min=1)
    channels: list[int] = spec(min=1)
    attention_channels: int = spec(min=1)
    margin: float = spec(min=0)
    scale: float = spec(gt=0)
    asnorm: bool = spec()
    probe: bool = spec()
    cohort_top_n: int = spec(min=1)
    bootstrap: int = spec(min=0)


class SVTask(Task):
    name = "sv"
    needs = ("audio_filepath", "label")
    primary_metric = "eer"
    lower_is_better = True
    config_schema = SVConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.crop_seconds = self.opts.crop_seconds
        # the stats head starts from the probe: fitted on the untrained model's predictions
        self.init_head_from_train = self.opts.head == "stats" and self.opts.lda_init
        self.trials: dict[str, list[tuple[int, dict, dict, str, str]]] = {}
        self.speakers: list[str] = []

    def load(self, data_dir: Path) -> dict[str, list[dict]]:
        splits = super().load(data_dir)
        folder = self.data_folder(data_dir)
        for split in (self.dev_split, *self.eval_splits):
            path = find_trials(folder, split)
            trials = _resolve_trials(path, splits[split])
            labels = {t[0] for t in trials}
            if labels != {0, 1}:
                raise TaskError(f"{path}: needs both target (1) and non-target (0) trials")
            self.trials[split] = trials
        self.speakers = sorted({str(it["label"]) for it in splits["train"]})
        if len(self.speakers) < 2:
            raise TaskError(
                f"{find_manifest(folder, 'train')}: the training split has "
                f"{len(self.speakers)} speaker(s); speaker verification needs at least 2"
            )
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.train_items = self._train_windows(splits["train"])
        return splits

    def _train_windows(self, records: list[dict]) -> list[dict]:
        """The training examples: each record, or, for one longer than ``sv.train_window_seconds``,
        its windows of that length (each an utterance of the same speaker), so a long training
        recording never becomes one example."""
        length = self.opts.train_window_seconds
        if length is None:
            return records
        return [
            w
            for rec in records
            for w in (cut_windows([rec], length) if float(rec["duration"]) > length else [rec])
        ]

    def examples(self, split: str, records: list[dict]) -> list[dict]:
        """Train: the training examples (records, long ones as windows). Dev: its records. Eval
        splits: their records, then the training examples (the AS-norm cohort and the probe's
        training speakers)."""
        if split == "train":
            return self.train_items
        if split in self.eval_splits and (self.opts.asnorm or self.opts.probe):
            return [*records, *self.train_items]
        return records

    def build_head(self, info: EncoderInfo) -> StatsHead | ECAPAHead:
        o = self.opts
        pool = 1
        if o.frame_seconds is not None:
            pool = max(1, round(o.frame_seconds / info.frame_seconds))
        if o.head == "stats":
            return StatsHead(
                info.hidden_size, len(self.speakers), o.embedding_dim, o.margin, o.scale, pool
            )
        return ECAPAHead(
            info.hidden_size,
            len(self.speakers),
            o.embedding_dim,
            list(o.channels),
            o.attention_channels,
            o.margin,
            o.scale,
            pool,
        )

    def init_head(self, head, examples: list[dict], outputs: list) -> None:
        """Before training: the stats head's linear layer := the probe fitted on the training
        utterances' statistics, its classifier rows := the speakers' mean embeddings."""
        stats = np.stack([o[1] for o in outputs])
        labels = np.array([self.speaker_index[str(it["label"])] for it in examples])
        head.init_from_probe(fit_probe(stats, labels))
        w = head.embedding.weight
        with torch.no_grad():
            emb = head.embedding(torch.as_tensor(stats, dtype=w.dtype, device=w.device))
        head.init_classifier(emb.float().cpu().numpy(), labels)

    def target(self, item: dict, start: float, duration: float | None) -> int:
        return self.speaker_index[str(item["label"])]

    def loss(self, head, x, lengths, targets):
        return head.loss(x, lengths, targets)

    def predict(self, head, x, lengths) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per utterance: (embedding [E], mean + std of the featurizer output over frames
        [2D], the linear probe's input)."""
        emb = head.embed(x, lengths).float().cpu().numpy()
        stats = pool_stats(*head.frames(x.detach(), lengths)).float().cpu().numpy()
        return list(zip(emb, stats, strict=True))

    def _trial_arrays(self, split: str, examples: list[dict], outputs: list, part: int = 0):
        """(scores [N], labels [N], enroll [N, E], test [N, E]) of the split's trials, from the
        embeddings (``part`` 0) or the pooled features (1)."""
        emb = {id(it): out[part] for it, out in zip(examples, outputs, strict=True)}
        trials = self.trials[split]
        e = np.stack([emb[id(t[1])] for t in trials])
        t = np.stack([emb[id(t[2])] for t in trials])
        labels = np.array([tr[0] for tr in trials])
        return cosine_scores(e, t), labels, e, t

    def _eer(self, scores, labels) -> Score:
        return eer_score(scores, labels, n_resamples=self.opts.bootstrap)

    def evaluate(self, split: str, examples: list[dict], outputs: list, out_dir=None) -> dict:
        scores, labels, e, t = self._trial_arrays(split, examples, outputs)
        trials = self.trials[split]
        if split == self.dev_split:
            return {"eer": 100 * eer(scores, labels), "num_trials": len(trials)}
        metrics: dict = {"eer": self._eer(scores, labels), "num_trials": len(trials)}
        for p in (0.01, 0.05):
            metrics[f"min_dcf_{p:g}"] = min_dcf(scores, labels, p)
        columns = {"score": scores}
        if self.opts.asnorm:
            cohort = self._cohort(examples, outputs)
            normed = as_norm(scores, e, t, cohort, top_n=self.opts.cohort_top_n)
            metrics["eer_asnorm"] = self._eer(normed, labels)
            for p in (0.01, 0.05):
                metrics[f"min_dcf_{p:g}_asnorm"] = min_dcf(normed, labels, p)
            columns["score_asnorm"] = normed
        if self.opts.probe:
            t0 = time.perf_counter()
            scores_probe = self._probe(split, examples, outputs)
            metrics["eer_probe"] = self._eer(scores_probe, labels)
            metrics["probe_seconds"] = round(time.perf_counter() - t0, 2)
            columns["score_probe"] = scores_probe
        if out_dir is not None:
            self._write_scores(Path(out_dir) / f"{split}_scores.txt", trials, columns)
        return metrics

    def _train_outputs(self, examples: list[dict], outputs: list, part: int) -> np.ndarray:
        """[N_train, ...] the embeddings (``part`` 0) or pooled features (1) of the training
        records among ``examples``, in the order of ``self.train_items``."""
        train = {id(it) for it in self.train_items}
        return np.stack(
            [o[part] for it, o in zip(examples, outputs, strict=True) if id(it) in train]
        )

    def _probe(self, split: str, examples: list[dict], outputs: list) -> np.ndarray:
        """[N] trial scores of the linear probe: mean + std of the featurizer output, LDA fitted
        on the training speakers, cosine (``nestbench.tasks.sv.probe``)."""
        vectors = self._train_outputs(examples, outputs, part=1)
        labels = [str(it["label"]) for it in self.train_items]
        _, _, e, t = self._trial_arrays(split, examples, outputs, part=1)
        return probe_scores(vectors, labels, e, t)

    def _cohort(self, examples: list[dict], outputs: list) -> np.ndarray:
        """[S, E]: the mean length-normalised embedding of each training speaker."""
        emb = self._train_outputs(examples, outputs, part=0)
        labels = np.array([self.speaker_index[str(it["label"])] for it in self.train_items])
        sums = np.zeros((len(self.speakers), emb.shape[1]))
        np.add.at(sums, labels, emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12))
        return sums / np.bincount(labels, minlength=len(self.speakers))[:, None].clip(1)

    def artifacts(self) -> dict[str, str]:
        """Each eval split's trial scores."""
        names = {f"{s}_scores": f"{s}_scores.txt" for s in self.eval_splits}
        return {k: v for k, v in names.items() if (self.run_dir / v).is_file()}

    @staticmethod
    def _write_scores(path: Path, trials, columns: dict[str, np.ndarray]) -> None:
        lines = ["# enroll test label " + " ".join(columns)]
        for i, (label, _, _, enroll, test) in enumerate(trials):
            vals = " ".join(f"{c[i]:.6f}" for c in columns.values())
            lines.append(f"{enroll} {test} {label} {vals}")
        atomic_write_text(path, "\n".join(lines) + "\n")
