"""The ASR task: CTC over sentencepiece units on the featurizer output; WER and CER with jiwer.

Data (:mod:`nestbench.data.layout`: a folder's ``asr/`` sub-folder, or the folder itself):
manifests ``<split>_manifest.json`` with ``text`` for ``train``, ``dev`` and each eval split
(``test``; LibriSpeech's import names ``test-clean`` and ``test-other`` in ``splits.json``).

- **Text** goes through the normaliser of ``tasks/asr/text.py`` (lower case, punctuation to
  spaces, alphabet a-z, ' and space); characters outside the alphabet are dropped with a count
  (``asr.unknown_chars=drop``) or stop the run naming the manifest line (``error``).
- **Units**: a sentencepiece model (``asr.units``: unigram or bpe, at most ``asr.vocab_size``
  pieces) trained on the normalised training transcripts when the data is loaded, saved as
  ``units.model`` in the run folder; CTC class 0 is the blank.
- **Training examples**: utterances with an empty transcript, longer than
  ``asr.max_train_seconds``, or with more units than the head has frames (CTC needs a frame per
  unit, and a blank between repeated units) are left out of training and counted in the log and
  in ``asr_data.json``; ``asr.impossible=error`` stops on the last kind instead. The CTC loss is
  checked to be finite on every batch: nothing is ever zeroed silently. Eval utterances are never
  left out; ``too_long_for_ctc`` counts those of each split that no alignment can reach.
- **Head** (``tasks/asr/head.py``): ``asr.head`` ``small`` (default, sized for the embedded
  corpus on a CPU), ``superb`` (SUPERB's Linear 1024 + 2 x BiLSTM 1024, dropout 0.2) or ``linear``;
  frames averaged in runs of ``asr.frame_pool`` (``auto``: to about 40 ms, fbank's 10 ms by 4),
  then repeated ``asr.upsample`` times (``auto``: 2 below 25 frames/s); SpecAugment (time and
  feature masks) on the featurizer output in training.
- **Decoding**: ``asr.decoder=greedy`` (default) or ``beam`` (flashlight through torchaudio;
  ``asr.beam_size``, optional ``asr.lm`` KenLM and ``asr.lexicon``, ``asr.lm_weight``,
  ``asr.word_score``).
- **Metrics** per eval split: corpus WER and CER (percent, bootstrap 95% intervals over
  utterances), word substitutions, deletions, insertions; hypotheses go to
  ``<split>_predictions.json`` (each input line plus ``pred_text``, as NeMo writes them). The
  best epoch is the one with the lowest dev CER (``asr.select_on``; ``wer`` as in SUPERB).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from nestbench.tasks.asr.decode import BeamDecoder, greedy, write_lexicon
from nestbench.tasks.asr.head import (
    PRESETS,
    CTCBranchConfig,
    CTCHead,
    augment,
    ctc_loss,
    upsample_factor,
)
from nestbench.tasks.asr.text import drop_outside, normalize, outside_alphabet
from nestbench.tasks.asr.units import Units, train_units

from nestbench.config import spec
from nestbench.data.layout import find_manifest
from nestbench.data.manifest import atomic_write_text, write_manifest
from nestbench.layers import frame_pool
from nestbench.metrics.asr import wer_cer
from nestbench.task import EncoderInfo, Task, TaskError
from nestbench.windows import num_frames

log = logging.getLogger(__name__)

#: The key a record's normalised transcript is kept under.
REF = "_ref"


@dataclass
class ASRConfig(CTCBranchConfig):
    """``cfg.asr`` (values: configs/tasks/asr.yaml)."""

    head: str = spec(choices=tuple(PRESETS))
    frame_pool: str | int = spec()
    unknown_chars: str = spec(choices=("drop", "error"))
    impossible: str = spec(choices=("drop", "error"))
    max_train_seconds: float | None = spec(gt=0)
    decoder: str = spec(choices=("greedy", "beam"))
    beam_size: int = spec(min=1)
    lm: str | None = spec()
    lexicon: str | None = spec()
    lm_weight: float = spec()
    word_score: float = spec()
    bootstrap: int = spec(min=0)
    select_on: str = spec(choices=("wer", "cer"))


def ctc_frames_needed(ids: list[int]) -> int:
    """Frames a CTC alignment of ``ids`` needs: one per unit, plus a blank between repeats."""
    return len(ids) + sum(1 for a, b in zip(ids, ids[1:], strict=False) if a == b)


class ASRTask(Task):
    name = "asr"
    needs = ("audio_filepath",)
    primary_metric = "wer"
    lower_is_better = True
    config_schema = ASRConfig

    @property
    def dev_metric(self) -> str:
        """``asr.select_on``: dev CER by default. From CTC's all-blank start, characters come
        right epochs before whole words do, and a dev WER stuck at 100 would stop the run."""
        return self.opts.select_on if self.opts is not None else "cer"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.units: Units | None = None
        self.report: dict = {}
        self.train_refs: list[str] = []
        self._beam: BeamDecoder | None = None

    # -- data ------------------------------------------------------------------------------
    def load(self, data_dir: Path) -> dict[str, list[dict]]:
        splits = super().load(data_dir)
        folder = self.data_folder(data_dir)
        for split, records in splits.items():
            path = find_manifest(folder, split)
            unknown = 0
            for i, rec in enumerate(records, start=1):
                if rec.get("text") is None or not isinstance(rec["text"], str):
                    raise TaskError(f"{path}: record {i} has no text (a string; '' for silence)")
                ref = normalize(rec["text"])
                bad = outside_alphabet(ref)
                if bad:
                    if self.opts.unknown_chars == "error":
                        raise TaskError(
                            f"{path}: record {i}: characters {''.join(sorted(bad))!r} are "
                            "outside the ASR alphabet (a-z, ', space); asr.unknown_chars=drop "
                            "drops them"
                        )
                    unknown += 1
                    ref = drop_outside(ref)
                rec[REF] = ref
            if unknown:
                log.warning(
                    "asr: %d %s transcript(s) of %s had characters outside a-z, ' and space; "
                    "they were dropped (asr.unknown_chars=drop)",
                    unknown,
                    split,
                    path,
                )
            self.report.setdefault(split, {})["outside_alphabet"] = unknown
        self.train_refs = [r[REF] for r in splits["train"]]
        self.units = train_units(
            self.train_refs,
            self.run_dir / "units.model",
            self.opts.vocab_size,
            self.opts.units,
        )
        log.info(
            "asr: %s units (%d pieces) trained on %d transcripts: %s",
            self.opts.units,
            self.units.num_classes - 1,
            len(splits["train"]),
            self.units.model_file,
        )
        return splits

    @property
    def pool(self) -> int:
        """``asr.frame_pool`` as a factor: frames averaged before the head (auto: to ~40 ms)."""
        return self.pool_factor(0.04)

    @property
    def upsample(self) -> int:
        rate = self.info.frame_rate / self.pool
        return upsample_factor(self.opts.upsample, rate, "asr.upsample")

    def _frames(self, rec: dict) -> int:
        frames = num_frames(float(rec["duration"]), self.info.frame_rate)
        return -(-frames // self.pool) * self.upsample

    def examples(self, split: str, records: list[dict]) -> list[dict]:
        """Train: the usable utterances (see the module docstring). Eval: every record."""
        for rec in records:
            rec["_units"] = self.units.encode(rec[REF])
        impossible = [r for r in records if ctc_frames_needed(r["_units"]) > self._frames(r)]
        self.report.setdefault(split, {})["too_long_for_ctc"] = len(impossible)
        if split != "train":
            return records
        if impossible and self.opts.impossible == "error":
            r = impossible[0]
            raise TaskError(
                f"{r['audio_filepath']}: {ctc_frames_needed(r['_units'])} CTC steps for "
                f"{self._frames(r)} frames ({len(impossible)} such training utterance(s)); "
                "raise asr.upsample, lower asr.vocab_size, or set asr.impossible=drop"
            )
        limit = self.opts.max_train_seconds
        dropped = {"empty": 0, "too_long_for_ctc": len(impossible), "longer_than_max": 0}
        keep = []
        bad = {id(r) for r in impossible}
        for rec in records:
            if not rec[REF]:
                dropped["empty"] += 1
            elif limit is not None and float(rec["duration"]) > limit:
                dropped["longer_than_max"] += 1
            elif id(rec) not in bad:
                keep.append(rec)
        self.report["train"]["dropped"] = dropped
        if any(dropped.values()):
            log.warning(
                "asr: %d of %d training utterances left out: %d with an empty transcript, "
                "%d longer than asr.max_train_seconds=%s, %d with more CTC steps than frames",
                len(records) - len(keep),
                len(records),
                dropped["empty"],
                dropped["longer_than_max"],
                limit,
                dropped["too_long_for_ctc"],
            )
        if not keep:
            raise TaskError("asr: no usable training utterance (see the log for why)")
        self._write_report()
        return keep

    def _write_report(self) -> None:
        atomic_write_text(self.run_dir / "asr_data.json", json.dumps(self.report, indent=2) + "\n")

    # -- model -----------------------------------------------------------------------------
    def build_head(self, info: EncoderInfo) -> CTCHead:
        o = self.opts
        dims = {k: (o[k] if o[k] is not None else v) for k, v in PRESETS[o.head].items()}
        return CTCHead(info.hidden_size, self.units.num_classes, upsample=self.upsample, **dims)

    def target(self, item: dict, start: float, duration: float | None) -> torch.Tensor:
        return torch.tensor(item["_units"], dtype=torch.long)

    def collate_targets(self, targets: list[torch.Tensor]) -> list[torch.Tensor]:
        return targets

    def loss(self, head: CTCHead, x, lengths, targets) -> torch.Tensor:
        if head.training:
            x = augment(x, lengths, self.opts, self.info.frame_rate)
        log_probs, out_lens = head(*frame_pool(x, lengths, self.pool))
        return ctc_loss(log_probs, out_lens, targets, "asr")

    def predict(self, head: CTCHead, x, lengths) -> list[str]:
        log_probs, out_lens = head(*frame_pool(x, lengths, self.pool))
        if self.opts.decoder == "beam":
            ids = self._beam_decoder()(log_probs, out_lens)
        else:
            ids = greedy(log_probs, out_lens)
        # one space between words: what is scored is what <split>_predictions.json holds
        return [" ".join(self.units.decode(i).split()) for i in ids]

    def _beam_decoder(self) -> BeamDecoder:
        if self._beam is None:
            o = self.opts
            lexicon = o.lexicon
            if o.lm is not None and lexicon is None:
                words = {w for ref in self.train_refs for w in ref.split()}
                lexicon = write_lexicon(self.run_dir / "lexicon.txt", words, self.units.spell)
            self._beam = BeamDecoder(
                self.units.pieces(),
                o.beam_size,
                lm=o.lm,
                lexicon=lexicon,
                lm_weight=o.lm_weight,
                word_score=o.word_score,
            )
        return self._beam

    def artifacts(self) -> dict[str, str]:
        """The units model, the data report and each eval split's hypotheses."""
        names = {"units": "units.model", "data_report": "asr_data.json"}
        names |= {f"{s}_predictions": f"{s}_predictions.json" for s in self.eval_splits}
        return {k: v for k, v in names.items() if (self.run_dir / v).is_file()}

    # -- scoring ---------------------------------------------------------------------------
    def evaluate(self, split: str, examples: list[dict], outputs: list, out_dir=None) -> dict:
        refs = [rec[REF] for rec in examples]
        n = 0 if split == self.dev_split else self.opts.bootstrap
        m = wer_cer(refs, list(outputs), n_resamples=n)
        if split == self.dev_split:
            return {"wer": m["wer"].value, "cer": m["cer"].value}
        m["utterances"] = len(examples)
        m["too_long_for_ctc"] = self.report.get(split, {}).get("too_long_for_ctc", 0)
        if out_dir is not None:
            rows = [
                {k: v for k, v in rec.items() if not k.startswith("_")} | {"pred_text": hyp}
                for rec, hyp in zip(examples, outputs, strict=True)
            ]
            write_manifest(Path(out_dir) / f"{split}_predictions.json", rows)
        return m
