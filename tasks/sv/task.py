"""The speaker-verification task.

Data (a folder, or its ``sv/`` subfolder): NeMo manifests ``train.json``, ``dev.json``,
``test.json`` with ``label`` = speaker, and VoxCeleb-format trial lists ``dev_trials.txt`` and
``test_trials.txt`` (``label enroll test``) whose paths name manifest files by their path relative
to the trial list's folder (or any trailing part of it unique in the split).

Training: AAM softmax over the training speakers on random crops. Dev metric: EER of the dev trials
(early stopping, best checkpoint). Test: cosine scores of the test trials, EER (percent) with a
bootstrap 95% interval, normalised minDCF at P_target 0.01 and 0.05, and optionally the same after
AS-norm with a cohort of training-speaker embeddings (one mean embedding per speaker).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from nestbench.tasks.sv.head import SVHead

from nestbench.data.manifest import atomic_write_text, read_manifest
from nestbench.data.trials import TrialResolver, read_trials
from nestbench.metrics.sv import as_norm, bootstrap_eer, cosine_scores, eer, min_dcf
from nestbench.task import Task, TaskError

MANIFEST_NAMES = ("{split}.json", "{split}_manifest.json", "manifest_{split}.json")
TRIAL_NAMES = ("{split}_trials.txt", "trials_{split}.txt")


def _find(folder: Path, names, split: str, what: str) -> Path:
    for pattern in names:
        path = folder / pattern.format(split=split)
        if path.is_file():
            return path
    tried = ", ".join(p.format(split=split) for p in names)
    raise TaskError(f"{folder}: no {what} for the {split} split (looked for {tried})")


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


class SVTask(Task):
    name = "sv"
    needs = ("audio_filepath", "label")
    primary_metric = "eer"
    lower_is_better = True

    def __init__(self, cfg):
        super().__init__(cfg)
        self.opts = cfg.sv
        self.crop_seconds = float(self.opts.crop_seconds) if self.opts.crop_seconds else None
        self.trials: dict[str, list[tuple[int, dict, dict, str, str]]] = {}
        self.speakers: list[str] = []

    def load(self, data_dir: Path) -> dict[str, list[dict]]:
        folder = data_dir / "sv" if (data_dir / "sv").is_dir() else data_dir
        splits = {}
        for split in ("train", "dev", "test"):
            path = _find(folder, MANIFEST_NAMES, split, "manifest")
            items = read_manifest(path)
            if not items:
                raise TaskError(f"{path}: the {split} manifest is empty")
            self.check_items(split, items, str(path))
            splits[split] = items
        for split in ("dev", "test"):
            path = _find(folder, TRIAL_NAMES, split, "trial list")
            trials = _resolve_trials(path, splits[split])
            labels = {t[0] for t in trials}
            if labels != {0, 1}:
                raise TaskError(f"{path}: needs both target (1) and non-target (0) trials")
            self.trials[split] = trials
        self.speakers = sorted({str(it["label"]) for it in splits["train"]})
        self.speaker_index = {s: i for i, s in enumerate(self.speakers)}
        self.train_items = splits["train"]
        return splits

    def build_head(self, hidden_size: int, frame_shift: int) -> SVHead:
        o = self.opts
        return SVHead(
            hidden_size,
            len(self.speakers),
            int(o.embedding_dim),
            list(o.channels),
            int(o.attention_channels),
            float(o.margin),
            float(o.scale),
        )

    def target(self, item: dict, start: float, duration: float | None) -> int:
        return self.speaker_index[str(item["label"])]

    def loss(self, head, x, lengths, targets):
        return head.loss(x, lengths, targets)

    def predict(self, head, x, lengths) -> list[np.ndarray]:
        return list(head.embed(x, lengths).float().cpu().numpy())

    def _scores(
        self, split: str, predict
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list]:
        trials = self.trials[split]
        unique = list({id(it): it for _, e, t, *_ in trials for it in (e, t)}.values())
        emb = dict(zip((id(it) for it in unique), predict(unique), strict=True))
        e = np.stack([emb[id(t[1])] for t in trials])
        t = np.stack([emb[id(t[2])] for t in trials])
        labels = np.array([tr[0] for tr in trials])
        return cosine_scores(e, t), labels, e, t, trials

    def evaluate(self, split: str, predict, out_dir: Path | None = None) -> dict:
        scores, labels, e, t, trials = self._scores(split, predict)
        metrics = {"eer": 100 * eer(scores, labels), "num_trials": len(trials)}
        if split != "test":
            return metrics
        o = self.opts
        low, high = bootstrap_eer(scores, labels, n_resamples=int(o.bootstrap))
        metrics["eer_ci95"] = [100 * low, 100 * high]
        for p in (0.01, 0.05):
            metrics[f"min_dcf_{p:g}"] = min_dcf(scores, labels, p)
        columns = {"score": scores}
        if o.asnorm:
            cohort = self._cohort(predict)
            normed = as_norm(scores, e, t, cohort, top_n=int(o.cohort_top_n))
            metrics["eer_asnorm"] = 100 * eer(normed, labels)
            lo, hi = bootstrap_eer(normed, labels, n_resamples=int(o.bootstrap))
            metrics["eer_asnorm_ci95"] = [100 * lo, 100 * hi]
            for p in (0.01, 0.05):
                metrics[f"min_dcf_{p:g}_asnorm"] = min_dcf(normed, labels, p)
            columns["score_asnorm"] = normed
        if out_dir is not None:
            self._write_scores(Path(out_dir) / "scores.txt", trials, columns)
        return metrics

    def _cohort(self, predict) -> np.ndarray:
        """[S, E]: the mean embedding of each training speaker."""
        emb = np.stack(predict(self.train_items))
        labels = np.array([self.speaker_index[str(it["label"])] for it in self.train_items])
        sums = np.zeros((len(self.speakers), emb.shape[1]))
        np.add.at(sums, labels, emb / np.linalg.norm(emb, axis=1, keepdims=True).clip(1e-12))
        return sums / np.bincount(labels, minlength=len(self.speakers))[:, None].clip(1)

    @staticmethod
    def _write_scores(path: Path, trials, columns: dict[str, np.ndarray]) -> None:
        lines = ["# enroll test label " + " ".join(columns)]
        for i, (label, _, _, enroll, test) in enumerate(trials):
            vals = " ".join(f"{c[i]:.6f}" for c in columns.values())
            lines.append(f"{enroll} {test} {label} {vals}")
        atomic_write_text(path, "\n".join(lines) + "\n")
