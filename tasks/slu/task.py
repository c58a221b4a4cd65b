"""The SLU task: intent (scenario and action) and entities with their fillers, from the featurizer
output; scored with SLURP's metrics.

Data (:mod:`nestbench.data.layout`: a folder's ``slu/`` sub-folder, or the folder itself):
manifests ``<split>_manifest.json`` for ``train``, ``dev`` and ``test``, one line per recording
(``nestbench data prepare slurp`` writes them; several recordings of one sentence are separate
items, as in SLURP's scoring) with ``text``, ``scenario``, ``action`` and ``entities``
(``[{"type", "filler"}]``).

- **Text** goes through the ASR normaliser (``tasks/asr/text.py``); fillers too.
- **Intents** are the training split's ``scenario_action`` labels. A dev/test recording whose
  intent never occurs in training can never be predicted right: it is counted in the log and
  in ``slu_data.json`` and scored as it is (``slu.unknown_intent=count``), or stops the run
  naming it (``error``).
- **Entities** whose filler is not a run of the sentence's words cannot be tagged: in training
  they are left out of the target and counted (``slu.missing_span=drop``) or stop the run naming
  the record (``error``); in dev/test the gold entities are scored as given.
- **Head** (``slu.head=ctc``, SUPERB IC + SF): CTC over sentencepiece units (trained on the
  tagged training sentences, ``units.model`` in the run folder) of the sentence with
  ``<type> ... </type>`` tags around each entity's words (``tasks/slu/tags.py``), and an intent
  classifier on pooled frames (``slu.pooling``: ``max``, the mean and maximum, ``stats`` or
  ``attention``) of the CTC branch's LSTM states (``slu.intent_input=states``, the default: an
  encoder's frames alone rarely name the intent) or of the features (``features``, SUPERB IC);
  loss = cross-entropy + ``slu.ctc_weight`` x CTC. The CTC branch is the ASR task's head
  (``slu.head_size`` preset of ``tasks/asr/head.py``, one LSTM layer by default), with frame
  upsampling and SpecAugment as there; training recordings with more CTC steps than frames are
  left out and counted. Frames under 40 ms are first averaged (both heads) in runs of about 40 ms
  (``slu.frame_pool``: fbank's 10 ms frames by 4), which makes the head learn far sooner.
- **Head** ``slu.head=seq2seq`` (NeMo's design, small): a Transformer decoder
  (``slu.seq2seq_*``) over the projected features generates the semantics string
  (``tasks/slu/semantics.py``) as sentencepiece units trained on the training semantics, with
  teacher forcing; greedy decoding (``slu.seq2seq_beam=1``) or beam search (``> 1``, with
  ``slu.seq2seq_length_penalty``); output that does not parse counts as wrong.
- **Best epoch**: the highest dev ``slu.select_on``, by default the mean of intent accuracy and
  SLU-F1.
- **Metrics** per eval split (``nestbench/metrics/slu.py``): scenario, action and intent accuracy,
  span-F1, word- and char-distance F1 and SLU-F1, in percent with bootstrap 95% intervals over
  recordings. Predictions go to ``<split>_predictions.jsonl`` in SLURP's prediction format
  (``{"file", "scenario", "action", "entities": [{"type", "filler"}]}``).
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from nestbench.tasks.asr.decode import greedy
from nestbench.tasks.asr.head import (
    PRESETS,
    CTCBranchConfig,
    augment,
    ctc_loss,
    upsample_factor,
)
from nestbench.tasks.asr.task import ctc_frames_needed
from nestbench.tasks.asr.text import drop_outside, normalize
from nestbench.tasks.asr.units import Units, train_units
from nestbench.tasks.slu.head import Seq2SeqHead, SLUHead
from nestbench.tasks.slu.semantics import parse_semantics, semantics_string
from nestbench.tasks.slu.tags import join_tagged, parse_tags, tag_symbols, tag_text
from torch import nn

from nestbench.config import spec
from nestbench.data.layout import find_manifest
from nestbench.data.manifest import atomic_write_text
from nestbench.layers import frame_pool
from nestbench.metrics.slu import slu_scores
from nestbench.task import EncoderInfo, Task, TaskError
from nestbench.windows import num_frames

log = logging.getLogger(__name__)

#: Keys the task adds to a record: the gold semantics, the tagged training text, its units.
GOLD, TAGGED, UNITS = "_gold", "_tagged", "_units"
_TYPE = re.compile(r"^[a-z0-9_]+$")


@dataclass
class SLUConfig(CTCBranchConfig):
    """``cfg.slu`` (values: configs/tasks/slu.yaml; the CTC branch's keys as ``asr.*``)."""

    head: str = spec(choices=("ctc", "seq2seq"))
    pooling: str = spec(choices=("max", "stats", "attention"))
    intent_input: str = spec(choices=("states", "features"))
    frame_pool: str | int = spec()
    intent_hidden: int = spec(min=1)
    intent_dropout: float = spec(min=0, max=0.9)
    ctc_weight: float = spec(min=0)
    head_size: str = spec(choices=tuple(PRESETS))
    unknown_intent: str = spec(choices=("count", "error"))
    missing_span: str = spec(choices=("drop", "error"))
    seq2seq_d_model: int = spec(min=8)
    seq2seq_layers: int = spec(min=1)
    seq2seq_heads: int = spec(min=1)
    seq2seq_ff: int = spec(min=8)
    seq2seq_dropout: float = spec(min=0, max=0.9)
    seq2seq_vocab_size: int = spec(min=2)
    seq2seq_beam: int = spec(min=1)
    seq2seq_length_penalty: float = spec(min=0)
    bootstrap: int = spec(min=0)
    select_on: str = spec(choices=("intent_slu_mean", "intent_accuracy", "slu_f1"))


def gold_of(rec: dict) -> dict:
    """A record's semantics in SLURP's prediction format, fillers normalised."""
    return {
        "scenario": rec["scenario"],
        "action": rec["action"],
        "entities": [
            {"type": e["type"], "filler": drop_outside(normalize(e["filler"]))}
            for e in rec.get("entities") or []
        ],
    }


class SLUTask(Task):
    name = "slu"
    needs = ("audio_filepath", "text", "scenario", "action")
    primary_metric = "slu_f1"
    lower_is_better = False
    config_schema = SLUConfig

    @property
    def dev_metric(self) -> str:
        """``slu.select_on``: by default the mean of dev intent accuracy and SLU-F1, as the
        SLU-F1 of a CTC branch still on its all-blank start is 0 while intents are learnt."""
        return self.opts.select_on if self.opts is not None else "intent_slu_mean"

    def __init__(self, cfg):
        super().__init__(cfg)
        self.intents: list[tuple[str, str]] = []  # (scenario, action), sorted
        self.units: Units | None = None
        self.report: dict = {}
        self.max_decode = 512
        self.frame_pool = 1  # frames averaged before the head (setup: slu.frame_pool)

    def setup(self, info: EncoderInfo, run_dir: Path) -> None:
        super().setup(info, run_dir)
        self.frame_pool = self._frame_pool()

    # -- data ------------------------------------------------------------------------------
    def load(self, data_dir: Path) -> dict[str, list[dict]]:
        splits = super().load(data_dir)
        folder = self.data_folder(data_dir)
        for split, records in splits.items():
            path = find_manifest(folder, split)
            missing_spans = 0
            for i, rec in enumerate(records, start=1):
                where = f"{path}: record {i}"
                if not Path(rec["audio_filepath"]).is_file():
                    raise TaskError(f"{where}: recording {rec['audio_filepath']} does not exist")
                ents = rec.get("entities") or []
                if not isinstance(ents, list) or not all(
                    isinstance(e, dict) and isinstance(e.get("type"), str)
                    and isinstance(e.get("filler"), str) for e in ents
                ):  # fmt: skip
                    raise TaskError(f'{where}: "entities" must be [{{"type", "filler"}}, ...]')
                bad = [e["type"] for e in ents if not _TYPE.match(e["type"])]
                if bad:
                    raise TaskError(f"{where}: entity type {bad[0]!r}, expected [a-z0-9_]+")
                rec[GOLD] = gold_of(rec)
                words = drop_outside(normalize(rec["text"])).split()
                pairs = [(e["type"], e["filler"].split()) for e in rec[GOLD]["entities"]]
                tagged, missing = tag_text(words, pairs)
                if missing and split == "train":
                    if self.opts.missing_span == "error":
                        kind, filler = missing[0]
                        raise TaskError(
                            f"{where}: entity {kind} {filler!r} is not a span of the sentence "
                            f"{' '.join(words)!r}; slu.missing_span=drop leaves it out"
                        )
                    missing_spans += len(missing)
                rec[TAGGED] = join_tagged(tagged)
            self.report.setdefault(split, {})["entities_not_in_sentence"] = missing_spans
            if missing_spans:
                log.warning(
                    "slu: %d %s entities of %s are not a span of their sentence: left out of "
                    "the training targets (slu.missing_span=drop)", missing_spans, split, path,
                )  # fmt: skip
        self.intents = sorted({self.intent(r) for r in splits["train"]})
        known = set(self.intents)
        for split in (self.dev_split, *self.eval_splits):
            unknown = Counter(self.intent(r) for r in splits[split] if self.intent(r) not in known)
            self.report[split]["unknown_intent_recordings"] = sum(unknown.values())
            if unknown and self.opts.unknown_intent == "error":
                raise TaskError(
                    f"{find_manifest(folder, split)}: intent(s) "
                    f"{', '.join('_'.join(k) for k in sorted(unknown))} "
                    "never occur in training; slu.unknown_intent=count scores them as errors"
                )
            if unknown:
                log.warning(
                    "slu: %d %s recording(s) have an intent never seen in training (%s): "
                    "they count as wrong", sum(unknown.values()), split,
                    ", ".join("_".join(k) for k in sorted(unknown)[:5]),
                )  # fmt: skip
        types = {e["type"] for r in splits["train"] for e in r[GOLD]["entities"]}
        if self.seq2seq:  # units of the semantics strings
            texts, symbols = [semantics_string(r[GOLD]) for r in splits["train"]], []
            size = self.opts.seq2seq_vocab_size
        else:  # units of the tagged sentences, each tag one piece
            texts, symbols = [r[TAGGED] for r in splits["train"]], tag_symbols(types)
            size = self.opts.vocab_size + len(symbols)
        self.units = train_units(
            texts,
            self.run_dir / "units.model",
            size,
            self.opts.units,
            symbols=symbols,
        )
        log.info(
            "slu: %d intents, %d entity types, %d units (tags included)",
            len(self.intents), len(types), self.units.num_classes - 1,
        )  # fmt: skip
        return splits

    @property
    def seq2seq(self) -> bool:
        return self.opts.head == "seq2seq"

    @staticmethod
    def intent(rec: dict) -> tuple[str, str]:
        return rec["scenario"], rec["action"]

    def _frame_pool(self) -> int:
        """``slu.frame_pool`` as a factor: ``auto`` averages frames of under 40 ms into runs of
        about 40 ms (fbank's 10 ms: 4; 20 ms: 2; NEST's 80 ms: 1)."""
        return self.pool_factor(0.04)

    @property
    def head_frame_rate(self) -> float:
        """Frames per second the head sees (after ``slu.frame_pool``)."""
        return self.info.frame_rate / self.frame_pool

    @property
    def upsample(self) -> int:
        return upsample_factor(self.opts.upsample, self.head_frame_rate, "slu.upsample")

    def examples(self, split: str, records: list[dict]) -> list[dict]:
        """Train: with the ctc head the recordings whose tagged units fit their frames (the
        others counted), with seq2seq all; the data report goes to ``slu_data.json``. Eval:
        every recording."""
        if split != "train":
            return records
        if self.seq2seq:
            for rec in records:
                rec[UNITS] = self.units.encode(semantics_string(rec[GOLD]))
            self.max_decode = int(1.25 * max(len(r[UNITS]) for r in records)) + 8
            keep = records
        else:
            keep = self._ctc_feasible(records)
        atomic_write_text(self.run_dir / "slu_data.json", json.dumps(self.report, indent=2) + "\n")
        return keep

    def _ctc_feasible(self, records: list[dict]) -> list[dict]:
        """The training recordings whose tagged units fit their frames (the others counted)."""
        keep = []
        for rec in records:
            rec[UNITS] = self.units.encode(rec[TAGGED])
            frames = num_frames(float(rec["duration"]), self.info.frame_rate)
            frames = -(-frames // self.frame_pool) * self.upsample
            if ctc_frames_needed(rec[UNITS]) <= frames and rec[UNITS]:
                keep.append(rec)
        self.report["train"]["too_long_for_ctc"] = len(records) - len(keep)
        if len(keep) < len(records):
            log.warning(
                "slu: %d of %d training recordings have more CTC steps than frames: left out",
                len(records) - len(keep), len(records),
            )  # fmt: skip
        if not keep:
            raise TaskError("slu: no usable training recording (see the log for why)")
        return keep

    # -- model -----------------------------------------------------------------------------
    def build_head(self, info: EncoderInfo) -> SLUHead | Seq2SeqHead:
        o = self.opts
        if self.seq2seq:
            return Seq2SeqHead(
                info.hidden_size, self.units.num_classes + 2, o.seq2seq_d_model, o.seq2seq_layers,
                o.seq2seq_heads, o.seq2seq_ff, o.seq2seq_dropout, max_len=self.max_decode,
            )  # fmt: skip
        ctc = {k: (o[k] if o[k] is not None else v) for k, v in PRESETS[o.head_size].items()}
        intent = {"hidden": o.intent_hidden, "pooling": o.pooling, "dropout": o.intent_dropout}
        return SLUHead(
            info.hidden_size, len(self.intents), self.units.num_classes, intent,
            {**ctc, "upsample": self.upsample}, o.intent_input,
        )  # fmt: skip

    def target(self, item: dict, start: float, duration: float | None):
        if self.seq2seq:
            return torch.tensor(item[UNITS], dtype=torch.long)
        return self.intents.index(self.intent(item)), torch.tensor(item[UNITS], dtype=torch.long)

    def collate_targets(self, targets):
        if self.seq2seq:
            return targets
        return torch.tensor([t[0] for t in targets]), [t[1] for t in targets]

    def loss(self, head, x, lengths, targets) -> torch.Tensor:
        x, lengths = frame_pool(x, lengths, self.frame_pool)
        if head.training:
            x = augment(x, lengths, self.opts, self.head_frame_rate)
        if self.seq2seq:
            return head.loss(x, lengths, targets)
        intents, units = targets
        intent_logits, log_probs, out_lens = head(x, lengths)
        ce = nn.functional.cross_entropy(intent_logits.float(), intents.to(x.device))
        return ce + self.opts.ctc_weight * ctc_loss(log_probs, out_lens, units, "slu")

    def predict(self, head, x, lengths) -> list[dict | None]:
        """Per recording its semantics (and the decoded words); None for seq2seq output that
        does not parse."""
        x, lengths = frame_pool(x, lengths, self.frame_pool)
        if self.seq2seq:
            ids = head.generate(x, lengths, beam=self.opts.seq2seq_beam,
                                length_penalty=self.opts.seq2seq_length_penalty)  # fmt: skip
            return [parse_semantics(self.units.decode(i)) for i in ids]
        intent_logits, log_probs, out_lens = head(x, lengths)
        best = intent_logits.argmax(-1).tolist()
        out = []
        for k, ids in zip(best, greedy(log_probs, out_lens), strict=True):
            scenario, action = self.intents[k]
            words, entities = parse_tags(self.units.decode(ids))
            out.append({"scenario": scenario, "action": action, "entities": entities,
                        "text": " ".join(words)})  # fmt: skip
        return out

    # -- scoring ---------------------------------------------------------------------------
    def evaluate(self, split: str, examples: list[dict], outputs: list, out_dir=None) -> dict:
        gold = [rec[GOLD] for rec in examples]
        final = split != self.dev_split
        m = slu_scores(gold, list(outputs), n_resamples=self.opts.bootstrap if final else 0)
        if not final:
            dev = {k: v.value for k, v in m.items()}
            dev["intent_slu_mean"] = (dev["intent_accuracy"] + dev["slu_f1"]) / 2
            return dev
        m["recordings"] = len(examples)
        m["unknown_intent_recordings"] = self.report.get(split, {}).get(
            "unknown_intent_recordings", 0
        )
        if out_dir is not None:
            lines = []
            for rec, pred in zip(examples, outputs, strict=True):
                empty = {"scenario": "", "action": "", "entities": []}  # did not parse
                row = {"file": Path(rec["audio_filepath"]).name, **(pred or empty)}
                row.pop("text", None)
                lines.append(json.dumps(row) + "\n")
            atomic_write_text(Path(out_dir) / f"{split}_predictions.jsonl", "".join(lines))
        return m

    def artifacts(self) -> dict[str, str]:
        names = {"units": "units.model", "data_report": "slu_data.json"}
        names |= {f"{s}_predictions": f"{s}_predictions.jsonl" for s in self.eval_splits}
        return {k: v for k, v in names.items() if (self.run_dir / v).is_file()}
