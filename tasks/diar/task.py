"""The diarization task: per-frame activity of up to ``diar.max_speakers`` speakers on the
featurizer output; RTTM out, DER and JER with pyannote.metrics.

Data (:mod:`nestbench.data.layout`: a folder's ``diar/`` sub-folder, or the folder itself):
manifests ``<split>_manifest.json`` for ``train``, ``dev`` and ``test`` whose records (sessions)
carry ``rttm_filepath`` and optionally ``uem_filepath``; the session's id is its audio file's
name without extension, matched to the RTTM's and UEM's file ids (an RTTM may hold many
sessions). A record with ``offset``/``duration`` is that stretch of its file.

- **Speakers**: a session with more speakers than ``diar.max_speakers`` (4) is an error naming it
  (``diar.too_many_speakers=error``), or (``drop``) is left out of training with a count and
  still scored in dev/test, where the extra speakers can only be missed or confused.
- **Training**: random crops of ``diar.train_seconds`` from windows of twice that length taken
  every ``train_seconds`` (so any stretch of a session can be drawn, and memory is bounded by the
  window), ``diar.crops_per_window`` of them per window and epoch; targets [T, S] from the RTTM
  at the encoder's frame rate (a frame is active where its centre is inside a turn); the head
  runs on frames averaged to about 80 ms (``diar.frame_pool``, ``auto``: fbank's 10 ms by 8,
  NEST's 80 ms as they are), each output standing for the frames it averaged. Loss
  (``diar.loss``): ``hybrid`` (Sortformer: 0.5 arrival-sorted BCE + 0.5 PIT BCE), ``pit`` or
  ``sorted`` (``tasks/diar/losses.py``).
- **Inference** on sessions of any length: windows of ``diar.window_seconds`` every
  ``diar.hop_seconds``, stitched into one [T, S] activity matrix per session with the slots of
  each window matched to the session's on their overlap (``tasks/diar/stitch.py``).
- **Post-processing** (``tasks/diar/postprocess.py``): median filter, onset/offset hysteresis,
  padding, minimum on/off durations. Each epoch's dev DER uses the ``diar.onset`` ... values;
  after training they are tuned on the dev split (``diar.tune``; grid search minimising
  ``diar.tune_metric``) and fixed for the eval splits; ``result.json`` records them (``tuned``).
- **Metrics** per eval split (``nestbench/metrics/diar.py``): ``der`` (collar 0) and
  ``der_collar25`` (md-eval ±0.25 s, pyannote collar 0.5), overlap scored, inside the UEM (the
  whole session without one), with bootstrap 95% intervals over sessions; ``missed``,
  ``false_alarm``, ``confusion`` (collar 0, percent of the reference speech); ``jer``.
- **Outputs** per eval split: ``<split>_rttm/<session>.rttm``, all of them in ``<split>.rttm``,
  and the per-session table ``<split>_sessions.json``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from nestbench.tasks.diar.head import PRESETS, DiarHead
from nestbench.tasks.diar.losses import LOSSES, diarization_loss
from nestbench.tasks.diar.postprocess import PostProcessing, to_segments, tune
from nestbench.tasks.diar.stitch import stitch_sessions

from nestbench.config import spec
from nestbench.data.layout import find_manifest
from nestbench.data.manifest import atomic_write_text
from nestbench.data.rttm import Segment, UEMRegion, read_rttm, read_uem, write_rttm
from nestbench.layers import frame_pool
from nestbench.metrics.diar import (
    COLLARS,
    DiarizationError,
    Session,
    score_sessions,
    session_der,
)
from nestbench.task import EncoderInfo, Task, TaskError
from nestbench.windows import cut_windows, num_frames

log = logging.getLogger(__name__)

#: The key a record's session is kept under.
SESSION = "_session"


@dataclass
class DiarConfig:
    """``cfg.diar`` (values: configs/tasks/diar.yaml)."""

    head: str = spec(choices=tuple(PRESETS))
    frame_pool: str | int = spec()
    model: str | None = spec(choices=("bilstm", "lstm", "transformer"))
    proj_dim: int | None = spec(min=0)
    hidden_size: int | None = spec(min=1)
    num_layers: int | None = spec(min=1)
    dropout: float | None = spec(min=0, max=0.9)
    max_speakers: int = spec(min=1, max=8)
    loss: str = spec(choices=LOSSES)
    too_many_speakers: str = spec(choices=("error", "drop"))
    train_seconds: float = spec(gt=0)
    crops_per_window: int = spec(min=1)
    window_seconds: float = spec(gt=0)
    hop_seconds: float = spec(gt=0)
    onset: float = spec(min=0, max=1)
    offset: float = spec(min=0, max=1)
    median_seconds: float = spec(min=0)
    pad_onset: float = spec(min=0)
    pad_offset: float = spec(min=0)
    min_dur_on: float = spec(min=0)
    min_dur_off: float = spec(min=0)
    tune: bool = spec()
    tune_metric: str = spec(choices=tuple(COLLARS))
    bootstrap: int = spec(min=0)


@dataclass
class SessionRef:
    """A session's reference: turns (file times), their speaker indices by first appearance,
    its scored regions, and where it lies in its file."""

    uri: str
    segments: list[Segment]
    speakers: list[str]
    onsets: np.ndarray  # [K] seconds from the session's start
    ends: np.ndarray  # [K]
    index: np.ndarray  # [K] speaker of each turn
    uem: list[UEMRegion]
    offset: float
    duration: float


class DiarTask(Task):
    name = "diar"
    needs = ("audio_filepath", "duration", "rttm_filepath")
    primary_metric = "der"
    lower_is_better = True
    config_schema = DiarConfig

    def __init__(self, cfg):
        super().__init__(cfg)
        self.sessions: dict[str, SessionRef] = {}
        self.records: dict[str, list[dict]] = {}
        self.post = self._configured_post()
        self.dropped: dict[str, int] = {}
        self._written: dict[str, str] = {}

    def _configured_post(self) -> PostProcessing:
        o = self.opts
        if o is None:
            return PostProcessing()
        return PostProcessing(
            o.onset, o.offset, o.median_seconds, o.pad_onset, o.pad_offset, o.min_dur_on,
            o.min_dur_off,
        )  # fmt: skip

    def setup(self, info: EncoderInfo, run_dir: Path) -> None:
        super().setup(info, run_dir)
        o = self.opts
        if o.hop_seconds > o.window_seconds:
            raise TaskError(
                f"diar.hop_seconds={o.hop_seconds} is longer than diar.window_seconds="
                f"{o.window_seconds}: inference windows would leave gaps"
            )
        self.crop_seconds = float(o.train_seconds)
        self.tune_on_dev = bool(o.tune)

    # -- data ------------------------------------------------------------------------------
    def load(self, data_dir: Path) -> dict[str, list[dict]]:
        splits = super().load(data_dir)
        folder = self.data_folder(data_dir)
        rttms: dict[str, list[Segment]] = {}
        for split, records in splits.items():
            manifest = find_manifest(folder, split)
            keep = []
            for i, rec in enumerate(records, start=1):
                ref = self._session(rec, rttms, f"{manifest}: record {i}")
                n = len(ref.speakers)
                if n > self.opts.max_speakers:
                    if self.opts.too_many_speakers == "error":
                        raise TaskError(
                            f"{manifest}: record {i} (session {ref.uri}): {n} speakers in "
                            f"{rec['rttm_filepath']}, more than diar.max_speakers="
                            f"{self.opts.max_speakers}; raise it, or set "
                            "diar.too_many_speakers=drop"
                        )
                    self.dropped[split] = self.dropped.get(split, 0) + 1
                    if split == "train":
                        continue
                key = f"{split}:{ref.uri}:{ref.offset:g}"
                if key in self.sessions:
                    raise TaskError(f"{manifest}: record {i}: session {ref.uri} is listed twice")
                rec[SESSION] = key
                self.sessions[key] = ref
                keep.append(rec)
            if not keep:
                raise TaskError(f"{manifest}: no session with at most diar.max_speakers speakers")
            splits[split] = keep
        for split, n in self.dropped.items():
            what = "left out of training" if split == "train" else "scored as they are"
            log.warning(
                "diar: %d %s session(s) have more than diar.max_speakers=%d speakers: %s",
                n, split, self.opts.max_speakers, what,
            )  # fmt: skip
        return splits

    def _session(self, rec: dict, rttms: dict, where: str) -> SessionRef:
        uri = Path(rec["audio_filepath"]).stem
        path = str(rec["rttm_filepath"])
        if path not in rttms:
            if not Path(path).is_file():
                raise TaskError(f"{where}: rttm_filepath {path} does not exist")
            rttms[path] = read_rttm(path)
        ids = {s.file_id for s in rttms[path]}
        if ids and uri not in ids:
            raise TaskError(
                f"{where}: {path} has no turns of file id {uri!r} (the audio file's name); "
                f"it has {', '.join(sorted(ids)[:5])}"
            )
        offset = float(rec.get("offset") or 0.0)
        duration = float(rec["duration"])
        end = offset + duration
        turns = sorted(
            (s for s in rttms[path] if s.file_id == uri and s.end > offset and s.onset < end),
            key=lambda s: (s.onset, s.speaker),
        )
        speakers = list(dict.fromkeys(s.speaker for s in turns))
        uem = []
        if rec.get("uem_filepath"):
            upath = str(rec["uem_filepath"])
            if not Path(upath).is_file():
                raise TaskError(f"{where}: uem_filepath {upath} does not exist")
            uem = [r for r in read_uem(upath) if r.file_id == uri]
        if not uem:
            uem = [UEMRegion(uri, offset, end)]
        return SessionRef(
            uri=uri,
            segments=turns,
            speakers=speakers,
            onsets=np.array([s.onset - offset for s in turns], dtype=np.float64),
            ends=np.array([s.end - offset for s in turns], dtype=np.float64),
            index=np.array([speakers.index(s.speaker) for s in turns], dtype=np.int64),
            uem=uem,
            offset=offset,
            duration=duration,
        )

    def examples(self, split: str, records: list[dict]) -> list[dict]:
        """Train: ``crops_per_window`` copies of each window of 2 x ``train_seconds`` (every
        ``train_seconds``), each cropped at random. Eval: inference windows."""
        self.records[split] = records
        o = self.opts
        if split == "train":
            windows = cut_windows(records, 2 * o.train_seconds, o.train_seconds)
            return [w for w in windows for _ in range(o.crops_per_window)]
        return cut_windows(records, o.window_seconds, o.hop_seconds)

    # -- model -----------------------------------------------------------------------------
    def build_head(self, info: EncoderInfo) -> DiarHead:
        o = self.opts
        dims = {k: (o[k] if o[k] is not None else v) for k, v in PRESETS[o.head].items()}
        return DiarHead(info.hidden_size, o.max_speakers, **dims)

    def activity(self, ref: SessionRef, start: float, frames: int) -> np.ndarray:
        """[frames, S] 0/1 targets from ``start`` seconds into the session: a frame is active
        for a speaker where its centre lies inside one of the speaker's turns."""
        fr = self.info.frame_rate
        y = np.zeros((frames, self.opts.max_speakers), dtype=np.float32)
        first = np.ceil((ref.onsets - start) * fr - 0.5).clip(0, frames).astype(int)
        last = np.ceil((ref.ends - start) * fr - 0.5).clip(0, frames).astype(int)
        for a, b, k in zip(first, last, ref.index, strict=True):
            if b > a and k < y.shape[1]:
                y[a:b, k] = 1.0
        return y

    def target(self, item: dict, start: float, duration: float | None) -> np.ndarray:
        ref = self.sessions[item[SESSION]]
        seconds = float(item["duration"]) if duration is None else duration
        begin = float(item.get("window_start", 0.0)) + start
        return self.activity(ref, begin, num_frames(seconds, self.info.frame_rate))

    def collate_targets(self, targets: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, T, S] targets padded with zeros, and their lengths [B]."""
        lens = torch.tensor([t.shape[0] for t in targets])
        y = torch.zeros(len(targets), int(lens.max()), targets[0].shape[1])
        for i, t in enumerate(targets):
            y[i, : t.shape[0]] = torch.from_numpy(t)
        return y, lens

    @property
    def pool(self) -> int:
        """``diar.frame_pool`` as a factor (auto: frames shorter than 80 ms averaged to ~80 ms)."""
        return self.pool_factor(0.08)

    def _logits(self, head: DiarHead, x, lengths) -> torch.Tensor:
        """[B, T, S] logits at the encoder's frame rate: the head runs on frames averaged in
        runs of ``pool`` and each of its outputs stands for the frames it averaged."""
        f = self.pool
        logits = head(*frame_pool(x, lengths, f))
        return logits if f == 1 else logits.repeat_interleave(f, dim=1)[:, : x.shape[1]]

    def loss(self, head: DiarHead, x, lengths, targets) -> torch.Tensor:
        y, ylens = targets
        logits = self._logits(head, x, lengths).float()  # the S x S BCE in float32 under bf16
        t = min(logits.shape[1], y.shape[1])  # an encoder may round a frame off
        valid = torch.minimum(lengths.to(ylens.device), ylens).clamp(max=t)
        return diarization_loss(
            logits[:, :t], y[:, :t].to(x.device), valid.to(x.device), self.opts.loss
        )

    def predict(self, head: DiarHead, x, lengths) -> list[np.ndarray]:
        probs = torch.sigmoid(self._logits(head, x, lengths).float()).cpu().numpy()
        return [p[: int(n)] for p, n in zip(probs, lengths.tolist(), strict=True)]

    # -- scoring ---------------------------------------------------------------------------
    def _activities(self, split: str, examples: list[dict], outputs: list) -> list[np.ndarray]:
        durations = [float(r["duration"]) for r in self.records[split]]
        return stitch_sessions(examples, outputs, self.info.frame_rate, durations)

    def _hypothesis(self, rec: dict, probs: np.ndarray, post: PostProcessing, smoothed=False):
        ref = self.sessions[rec[SESSION]]
        return to_segments(
            ref.uri, probs, self.info.frame_rate, post, ref.duration, ref.offset, smoothed
        )

    def _scored(self, rec: dict, hypothesis: list[Segment]) -> Session:
        ref = self.sessions[rec[SESSION]]
        return Session(ref.uri, ref.segments, hypothesis, ref.uem, ref.offset + ref.duration)

    def tune(self, split: str, examples: list[dict], outputs: list) -> dict:
        records = self.records[split]
        probs = self._activities(split, examples, outputs)
        collar = COLLARS[self.opts.tune_metric]

        def pooled(hyps: list[list[Segment]]) -> float:
            m = DiarizationError()
            for rec, hyp in zip(records, hyps, strict=True):
                m.add(**session_der(self._scored(rec, hyp), collar))
            return 100 * m.value()

        def segments(i: int, p: np.ndarray, post: PostProcessing) -> list[Segment]:
            return self._hypothesis(records[i], p, post, smoothed=True)

        start = self._configured_post()
        before = pooled(
            [self._hypothesis(r, p, start) for r, p in zip(records, probs, strict=True)]
        )
        best, after, tried = tune(probs, self.info.frame_rate, pooled, segments, start)
        if after >= before:
            best, after = start, before
        self.post = best
        log.info(
            "diar: post-processing tuned on %s (%d settings): %s=%.2f%% (%.2f%% with the "
            "configured values): %s",
            split, tried, self.opts.tune_metric, after, before, best.to_dict(),
        )  # fmt: skip
        return {
            "post_processing": best.to_dict(),
            "split": split,
            "metric": self.opts.tune_metric,
            "configured": round(before, 4),
            "tuned": round(after, 4),
            "settings_tried": tried,
        }

    def evaluate(self, split: str, examples: list[dict], outputs: list, out_dir=None) -> dict:
        records = self.records[split]
        probs = self._activities(split, examples, outputs)
        hyps = [self._hypothesis(r, p, self.post) for r, p in zip(records, probs, strict=True)]
        sessions = [self._scored(r, h) for r, h in zip(records, hyps, strict=True)]
        final = split != self.dev_split  # each epoch's dev DER: no interval, no JER
        metrics, table = score_sessions(
            sessions, bootstrap=self.opts.bootstrap if final else 0, jer=final
        )
        if out_dir is not None:
            self._write(Path(out_dir), split, sessions, table)
        return metrics

    def _write(self, out: Path, split: str, sessions: list[Session], table: list[dict]) -> None:
        folder = out / f"{split}_rttm"
        folder.mkdir(parents=True, exist_ok=True)
        everything = []
        for s in sessions:
            write_rttm(folder / f"{s.uri}.rttm", s.hypothesis)
            everything += s.hypothesis
        write_rttm(out / f"{split}.rttm", everything)
        atomic_write_text(out / f"{split}_sessions.json", json.dumps(table, indent=2) + "\n")
        self._written.update({
            f"{split}_rttm": f"{split}.rttm",
            f"{split}_rttm_sessions": f"{split}_rttm",
            f"{split}_sessions": f"{split}_sessions.json",
        })  # fmt: skip

    def artifacts(self) -> dict[str, str]:
        return dict(self._written)
