"""Three small tasks, one of each shape, that prove the Task contract needs nothing special in
the runner: an utterance classifier (two eval splits), a per-frame labeller on long recordings
(windows, stitched back, frame rate from ``setup``) and a variable-length CTC sequence task.

Each comes with a data folder maker; on each, an untrained head is near chance. Registered with
:func:`register` (``register_task``), as a third-party package would through the
``nestbench.tasks`` entry point.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jiwer
import numpy as np
import soundfile as sf
import torch
from torch import nn

from nestbench.config import spec
from nestbench.data.manifest import read_manifest
from nestbench.metrics.base import Accuracy, ErrorRate
from nestbench.task import Task, register_task
from nestbench.windows import num_frames, stitch_frames

SR = 16000
FREQS = (400.0, 900.0, 1700.0, 2900.0)


def _write(root: Path, rel: str, x: np.ndarray) -> dict:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")
    return {"audio_filepath": rel, "duration": round(x.size / SR, 4)}


def _tone(freq: float, seconds: float, rng, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return amp * np.sin(2 * np.pi * freq * t + rng.uniform(0, 6))


def _manifest(root: Path, split: str, records: list[dict]) -> None:
    (root / f"{split}.json").write_text("".join(json.dumps(r) + "\n" for r in records))


def _load_splits(task: Task, data_dir: Path) -> dict[str, list[dict]]:
    splits = {s: read_manifest(data_dir / f"{s}.json") for s in task.splits}
    for s, items in splits.items():
        task.check_items(s, items, str(data_dir / f"{s}.json"))
    return splits


# -- utterance classification ---------------------------------------------------------------


def make_utt_folder(root: Path, per_class: int = 8, seed: int = 0) -> Path:
    """Class k = a tone at FREQS[k] (random length, phase, loudness) in noise; test_b noisier."""
    rng = np.random.default_rng(seed)
    for split, n, noise in (
        ("train", per_class, 0.02),
        ("dev", 3, 0.02),
        ("test_a", 4, 0.02),
        ("test_b", 4, 0.04),
    ):
        recs = []
        for k in range(3):
            for u in range(n):
                x = _tone(FREQS[k], rng.uniform(0.5, 1.2), rng, amp=rng.uniform(0.1, 0.4))
                x = x + noise * rng.standard_normal(x.size)
                recs.append({**_write(root, f"{split}/c{k}_{u}.wav", x), "label": f"c{k}"})
        _manifest(root, split, recs)
    return root


@dataclass
class UttConfig:
    bootstrap: int = spec(200, min=0)


class ToyUtteranceTask(Task):
    """Utterance classification: mean over frames -> linear; accuracy on two eval splits."""

    name = "toy_utt"
    needs = ("audio_filepath", "label")
    primary_metric = "accuracy"
    lower_is_better = False
    eval_splits = ("test_a", "test_b")
    config_schema = UttConfig

    def load(self, data_dir):
        splits = _load_splits(self, Path(data_dir))
        self.labels = sorted({r["label"] for r in splits["train"]})
        return splits

    def build_head(self, info):
        return nn.Linear(info.hidden_size, len(self.labels))

    def _logits(self, head, x, lengths):
        mask = (torch.arange(x.shape[1], device=x.device)[None] < lengths[:, None]).to(x.dtype)
        pooled = (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return head(pooled)

    def target(self, item, start, duration):
        return self.labels.index(item["label"])

    def loss(self, head, x, lengths, targets):
        return nn.functional.cross_entropy(self._logits(head, x, lengths), targets)

    def predict(self, head, x, lengths):
        return self._logits(head, x, lengths).argmax(-1).tolist()

    def evaluate(self, split, examples, outputs, out_dir=None):
        acc = Accuracy()
        for rec, pred in zip(examples, outputs, strict=True):
            acc.add(correct=float(self.labels[pred] == rec["label"]), total=1.0)
        if out_dir is not None:
            (Path(out_dir) / f"{split}_predictions.json").write_text(
                json.dumps([self.labels[p] for p in outputs])
            )
        return {"accuracy": acc.score(self.opts.bootstrap, scale=100.0), "num": len(examples)}


# -- per-frame labelling of long recordings -------------------------------------------------


def make_frames_folder(root: Path, recordings: int = 3, seconds: float = 8.0, seed: int = 0):
    """Long recordings: a tone (label 1) switching on and off at random times in noise (0)."""
    rng = np.random.default_rng(seed)
    for split, n in (("train", recordings), ("dev", 1), ("test", 2)):
        recs = []
        for r in range(n):
            x = 0.01 * rng.standard_normal(int(SR * seconds))
            segments, t = [], float(rng.uniform(0.1, 0.6))
            while t < seconds - 0.3:
                length = float(rng.uniform(0.3, 1.0))
                end = min(seconds, t + length)
                i, j = int(t * SR), int(end * SR)
                x[i:j] += _tone(FREQS[1], (j - i) / SR, rng, amp=rng.uniform(0.1, 0.4))
                segments.append([round(t, 4), round(end, 4)])
                t = end + float(rng.uniform(0.3, 1.0))
            recs.append({**_write(root, f"{split}/r{r}.wav", x), "segments": segments})
        _manifest(root, split, recs)
    return root


@dataclass
class FramesConfig:
    window_seconds: float = spec(2.0, gt=0)
    hop_seconds: float = spec(1.0, gt=0)


class ToyFrameTask(Task):
    """Per-frame tone/no-tone labels at the encoder's frame rate; long recordings as windows,
    predictions stitched back per recording; frame error rate."""

    name = "toy_frames"
    needs = ("audio_filepath", "segments")
    primary_metric = "frame_error_rate"
    config_schema = FramesConfig

    def setup(self, info, run_dir):
        super().setup(info, run_dir)
        self.window = (self.opts.window_seconds, self.opts.hop_seconds)

    def load(self, data_dir):
        self.records = _load_splits(self, Path(data_dir))
        return self.records

    def labels(self, rec: dict, start: float, duration: float) -> np.ndarray:
        """[T] 0/1 per frame of [start, start + duration) seconds of the record."""
        rate = self.info.frame_rate
        n = num_frames(duration, rate)
        centres = start + (np.arange(n) + 0.5) / rate
        y = np.zeros(n, dtype=np.int64)
        for a, b in rec["segments"]:
            y[(centres >= a) & (centres < b)] = 1
        return y

    def build_head(self, info):
        return nn.Linear(info.hidden_size, 2)

    def target(self, item, start, duration):
        rel = float(item.get("window_start", 0.0)) + start
        return torch.from_numpy(self.labels(item, rel, duration or float(item["duration"])))

    def collate_targets(self, targets):
        return nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=-100)

    def loss(self, head, x, lengths, targets):
        logits = head(x)[:, : targets.shape[1]]
        y = targets[:, : logits.shape[1]]
        return nn.functional.cross_entropy(logits.transpose(1, 2), y, ignore_index=-100)

    def predict(self, head, x, lengths):
        probs = head(x).softmax(-1)[..., 1]
        return [p[:n].float().cpu().numpy() for p, n in zip(probs, lengths.tolist(), strict=True)]

    def evaluate(self, split, examples, outputs, out_dir=None):
        records = self.records[split]
        durations = [float(r["duration"]) for r in records]
        stitched = stitch_frames(examples, outputs, self.info.frame_rate, durations)
        fer = ErrorRate()
        for rec, p in zip(records, stitched, strict=True):
            y = self.labels(rec, 0.0, float(rec["duration"]))
            fer.add(errors=float(((p > 0.5).astype(int) != y).sum()), total=float(y.size))
        return {"frame_error_rate": fer.score(200, scale=100.0), "windows": len(examples)}


# -- variable-length sequences with CTC -----------------------------------------------------


def make_ctc_folder(root: Path, per_split: dict | None = None, seed: int = 0) -> Path:
    """Utterances of 2-5 tone symbols (FREQS), each 0.2-0.3 s with short gaps; text = symbols."""
    rng = np.random.default_rng(seed)
    per_split = per_split or {"train": 40, "dev": 8, "test": 10}
    names = "abcd"
    for split, n in per_split.items():
        recs = []
        for u in range(n):
            symbols = rng.integers(0, 4, size=int(rng.integers(2, 6)))
            parts = [0.01 * rng.standard_normal(int(SR * 0.1))]
            for s in symbols:
                tone = _tone(FREQS[s], rng.uniform(0.2, 0.3), rng, amp=rng.uniform(0.15, 0.4))
                parts += [tone, 0.01 * rng.standard_normal(int(SR * rng.uniform(0.08, 0.15)))]
            x = np.concatenate(parts)
            x = x + 0.01 * rng.standard_normal(x.size)
            text = " ".join(names[s] for s in symbols)
            recs.append({**_write(root, f"{split}/u{u}.wav", x), "text": text})
        _manifest(root, split, recs)
    return root


class ToyCTCTask(Task):
    """Symbol sequences with CTC (blank = 0); greedy decoding; token error rate with jiwer."""

    name = "toy_ctc"
    needs = ("audio_filepath", "text")
    primary_metric = "ter"
    symbols = "abcd"

    def load(self, data_dir):
        return _load_splits(self, Path(data_dir))

    def build_head(self, info):
        return nn.Linear(info.hidden_size, len(self.symbols) + 1)

    def target(self, item, start, duration):
        return torch.tensor([self.symbols.index(s) + 1 for s in item["text"].split()])

    def collate_targets(self, targets):
        return targets  # a list of [U] tensors

    def loss(self, head, x, lengths, targets):
        logp = head(x).log_softmax(-1).transpose(0, 1)  # [T, B, C]
        flat = torch.cat(targets).to(x.device)
        target_lens = torch.tensor([t.numel() for t in targets], device=x.device)
        return nn.functional.ctc_loss(logp, flat, lengths, target_lens, zero_infinity=False)

    def predict(self, head, x, lengths):
        best = head(x).argmax(-1)
        out = []
        for row, n in zip(best, lengths.tolist(), strict=True):
            ids = torch.unique_consecutive(row[:n]).tolist()
            out.append(" ".join(self.symbols[i - 1] for i in ids if i != 0))
        return out

    def evaluate(self, split, examples, outputs, out_dir=None):
        ter = ErrorRate()
        for rec, hyp in zip(examples, outputs, strict=True):
            w = jiwer.process_words(rec["text"], hyp)
            ter.add(
                errors=w.substitutions + w.deletions + w.insertions,
                total=w.hits + w.substitutions + w.deletions,
            )
        return {"ter": ter.score(200, scale=100.0)}


TOY_TASKS = {"toy_utt": ToyUtteranceTask, "toy_frames": ToyFrameTask, "toy_ctc": ToyCTCTask}
MAKERS = {"toy_utt": make_utt_folder, "toy_frames": make_frames_folder, "toy_ctc": make_ctc_folder}


def register() -> None:
    for name, cls in TOY_TASKS.items():
        register_task(name, cls)


def registered():
    """A pytest fixture body: the toy tasks registered for a module, unregistered after it."""
    from nestbench.task import unregister_task

    register()
    yield
    for name in TOY_TASKS:
        unregister_task(name)


def run_toy(task: str, tmp_path, data, encoder: str, overrides, *extra, epochs: int):
    """A ``nestbench run`` of ``task`` on a toy folder: ``overrides``, ``epochs``, a cache and
    the runs under ``tmp_path``, then ``extra``. -> (run, result)."""
    from nestbench.runner import run

    cache = f"cache.root={tmp_path / 'cache'}"
    return run(
        task,
        [*overrides, f"trainer.max_epochs={epochs}", cache, *extra],
        encoder=encoder,
        data=str(data),
        out=str(tmp_path / "runs"),
    )
