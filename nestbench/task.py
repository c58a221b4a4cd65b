"""The Task contract and the task registry.

A task (a folder under ``tasks/``, installed as ``nestbench.tasks.<name>``; a third-party class
registered under the entry-point group ``nestbench.tasks``; or a class given to
:func:`register_task`) declares its ``name``, the manifest fields it ``needs``, its
``primary_metric`` and whether lower is better (and the ``dev_metric`` that picks the best
epoch and stops training, by default the same), its ``eval_splits`` (one or more test sets) and
the schema of its config section (``config_schema``, a dataclass for ``cfg.<name>``). The runner
calls, in this order:

1. ``setup(info, run_dir)``: the encoder's :class:`EncoderInfo` (frame rate, hidden size, layer
   count) and the run folder, before any data is read, so that what the task fits on the
   training split (a sentencepiece model, a label map) can be saved there and a frame-level
   target knows its frame rate;
2. ``load(data_dir) -> {split: records}`` with ``train``, ``dev`` and every eval split (manifest
   dicts with absolute ``audio_filepath``), after reading whatever else it needs (trials, RTTM).
   The default reads the data layout of :mod:`nestbench.data.layout` (``<data_dir>/<name>/
   <split>_manifest.json``, the dev and eval splits named by ``splits.json`` where present);
   a task extends it with ``super().load(data_dir)``;
3. ``examples(split, records)``: what the model sees for a split. By default the records
   themselves, or with ``window = (length, hop)`` their windows (:mod:`nestbench.windows`), so a
   long recording is never one tensor; a task may add records it needs for scoring (SV: the
   training speakers for its cohort);
4. ``build_head(info) -> nn.Module``; with ``init_head_from_train`` the untrained model then
   predicts the training examples and ``init_head(head, examples, outputs)`` may initialise the
   head from them (SV starts its stats head from LDA);
5. training: ``target(example, start, duration)`` for the (cropped) example, ``collate_targets``,
   ``loss(head, x [B, T, D], lengths [B], targets)``;
6. with ``tune_on_dev``, after training: ``tune(dev_split, examples, outputs)`` on the best
   model's dev outputs (values fixed from then on, as post-processing tuned on dev);
7. prediction, one path for dev and every eval split (the same loader, device and precision):
   ``predict(head, x, lengths) -> list`` of per-example outputs, then
   ``evaluate(split, examples, outputs, out_dir) -> {metric: Score | number}``, with ``outputs``
   aligned to ``examples``; with ``out_dir`` the task also writes its predictions there in its
   field's native format.

Every task meets every encoder through the featurizer's [B, T, D] output: utterance-level tasks
pool over T, sequence tasks decode over T, frame-level tasks predict per frame.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nestbench.data.layout import Splits, find_manifest, read_splits, task_folder
from nestbench.data.manifest import read_manifest
from nestbench.errors import UserError
from nestbench.windows import cut_windows

TASK_ENTRY_POINT_GROUP = "nestbench.tasks"
BUILTIN_TASKS = {
    "sv": "nestbench.tasks.sv:SVTask",
    "asr": "nestbench.tasks.asr:ASRTask",
    "diar": "nestbench.tasks.diar:DiarTask",
    "slu": "nestbench.tasks.slu:SLUTask",
}
_REGISTERED: dict[str, type] = {}


class TaskError(UserError):
    """A task that cannot run on the data given (missing files, unknown utterances, ...)."""


@dataclass(frozen=True)
class EncoderInfo:
    """What a task may know of the encoder (never the encoder itself)."""

    name: str
    sample_rate: int
    frame_shift: int  # input samples per output frame
    hidden_size: int  # D
    num_layers: int  # L (the encoder gives L + 1 hidden states)
    num_inputs: int  # hidden states the featurizer combines (L + 1, or the cached selection)

    @property
    def frame_rate(self) -> float:
        """Output frames per second (12.5 for NEST's 80 ms frames)."""
        return self.sample_rate / self.frame_shift

    @property
    def frame_seconds(self) -> float:
        return self.frame_shift / self.sample_rate

    @classmethod
    def of(cls, encoder, num_inputs: int | None = None) -> EncoderInfo:
        return cls(
            name=str(encoder.name),
            sample_rate=int(encoder.sample_rate),
            frame_shift=int(encoder.frame_shift),
            hidden_size=int(encoder.hidden_size),
            num_layers=int(encoder.num_layers),
            num_inputs=int(encoder.num_layers + 1 if num_inputs is None else num_inputs),
        )


class Task:
    """Base class of downstream tasks (see the module docstring for the contract)."""

    name: str = ""
    needs: tuple[str, ...] = ("audio_filepath",)
    primary_metric: str = ""
    lower_is_better: bool = True
    #: The split that selects the best epoch, and the splits reported as results.
    dev_split: str = "dev"
    eval_splits: tuple[str, ...] = ("test",)
    #: A dataclass typing this task's config section ``cfg.<name>`` (None: untyped).
    config_schema: type | None = None
    #: Random training crops, seconds (None: whole examples). Evaluation uses whole examples.
    crop_seconds: float | None = None
    #: (length, hop) seconds: every record is cut into windows (None: records are used whole).
    window: tuple[float, float] | None = None
    #: Predict the training examples before training and pass them to ``init_head``.
    init_head_from_train: bool = False
    #: After training, predict the dev split with the best model and pass it to ``tune``.
    tune_on_dev: bool = False

    def __init__(self, cfg):
        self.cfg = cfg
        self.info: EncoderInfo | None = None
        self.run_dir: Path | None = None

    @property
    def opts(self):
        """This task's config section (``cfg.<name>``)."""
        return self.cfg[self.name] if self.name in self.cfg else None

    def pool_factor(self, seconds: float) -> int:
        """This task's ``frame_pool`` setting as a factor: ``auto`` averages frames shorter
        than ``seconds`` into runs of about that length (fbank's 10 ms to 40 ms: 4; NEST's 80 ms:
        1); otherwise an integer 1 ... 8 (TaskError naming the key for anything else)."""
        value = self.opts.frame_pool
        if value == "auto":
            return max(1, int(round(seconds * self.info.frame_rate)))
        if str(value) not in ("1", "2", "3", "4", "5", "6", "7", "8"):
            raise TaskError(f"{self.name}.frame_pool: {value!r}, expected auto or 1 ... 8")
        return int(value)

    @property
    def dev_metric(self) -> str:
        """The dev-split metric that selects the best epoch and stops training early (by
        default the primary metric; a task may pick one that moves sooner, as ASR's CER)."""
        return self.primary_metric

    @property
    def dev_lower_is_better(self) -> bool:
        return self.lower_is_better

    def setup(self, info: EncoderInfo, run_dir: Path) -> None:
        self.info, self.run_dir = info, Path(run_dir)

    def data_folder(self, data_dir: Path) -> Path:
        """The folder this task reads: ``<data_dir>/<name>/`` when it exists (the layout of
        :mod:`nestbench.data.layout`), else ``data_dir``; its files are fingerprinted into the
        run id."""
        return task_folder(data_dir, self.name)

    def load(self, data_dir: Path) -> dict[str, list[dict]]:
        """Every split's records from the task folder's manifests (see :meth:`read_layout`).

        Raises:
            LayoutError: a split has no manifest; TaskError: a manifest is empty or a record
            lacks a field in ``needs``; ManifestError: a malformed line.
        """
        folder = self.read_layout(data_dir)
        splits = {}
        for split in self.splits:
            path = find_manifest(folder, split)
            items = read_manifest(path)
            if not items:
                raise TaskError(f"{path}: the {split} manifest is empty")
            self.check_items(split, items, str(path))
            splits[split] = items
        return splits

    def read_layout(self, data_dir: Path) -> Path:
        """The task folder of ``data_dir``; sets ``dev_split`` and ``eval_splits`` from its
        ``splits.json`` (else the class's defaults)."""
        folder = self.data_folder(data_dir)
        cls = type(self)
        found = read_splits(folder, Splits(cls.dev_split, tuple(cls.eval_splits)))
        self.dev_split, self.eval_splits = found.dev, found.eval
        return folder

    @property
    def splits(self) -> tuple[str, ...]:
        return ("train", self.dev_split, *self.eval_splits)

    def examples(self, split: str, records: list[dict]) -> list[dict]:
        if self.window is None:
            return records
        return cut_windows(records, *self.window)

    def build_head(self, info: EncoderInfo) -> nn.Module:
        raise NotImplementedError

    def init_head(self, head: nn.Module, examples: list[dict], outputs: list) -> None:
        """Initialise ``head`` from the untrained model's outputs on the training examples."""

    def tune(self, split: str, examples: list[dict], outputs: list) -> dict:
        """With ``tune_on_dev``: fit what decoding needs (diarization: its post-processing) on
        the best model's dev outputs, before any eval split is scored; returns the chosen
        values, which the result records as ``tuned``."""
        return {}

    def target(self, item: dict, start: float, duration: float | None) -> Any:
        raise NotImplementedError

    def collate_targets(self, targets: list[Any]) -> Any:
        return torch.as_tensor(targets)

    def loss(
        self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor, targets
    ) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, head: nn.Module, x: torch.Tensor, lengths: torch.Tensor) -> list[Any]:
        raise NotImplementedError

    def evaluate(
        self, split: str, examples: list[dict], outputs: list, out_dir: Path | None = None
    ) -> dict:
        raise NotImplementedError

    def artifacts(self) -> dict[str, str]:
        """Files this task wrote into the run folder, by name (paths relative to it), for
        ``result.json``; the default lists none."""
        return {}

    def check_items(self, split: str, items: list[dict], source: str) -> None:
        """Raise TaskError naming ``source`` when a record lacks a field this task needs."""
        for i, item in enumerate(items):
            missing = [f for f in self.needs if item.get(f) in (None, "")]
            if missing:
                raise TaskError(
                    f"{source}: record {i + 1} of the {split} split lacks "
                    f"{', '.join(missing)} (the {self.name} task needs {', '.join(self.needs)})"
                )

    def check_splits(self, splits: dict[str, list[dict]]) -> None:
        """Raise TaskError when ``load`` did not give every split the task declares."""
        missing = [s for s in self.splits if not splits.get(s)]
        if missing:
            raise TaskError(
                f"task {self.name}: no records for the {', '.join(missing)} split(s) "
                f"(it needs {', '.join(self.splits)})"
            )


def register_task(name: str, cls: type[Task] | str) -> None:
    """Register a task class (or a ``module:Class`` string) under ``name`` for this process;
    it takes precedence over built-in tasks and entry points of the same name."""
    if not name or not isinstance(name, str):
        raise TaskError(f"a task name must be a non-empty string, got {name!r}")
    if not isinstance(cls, str) and not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"register_task({name!r}, ...): expected a Task subclass, got {cls!r}")
    _REGISTERED[name] = cls


def unregister_task(name: str) -> None:
    _REGISTERED.pop(name, None)


def available_tasks() -> dict[str, str | type]:
    """Task name -> ``module:Class`` (or the class) for registered, built-in and entry-point
    tasks."""
    found: dict[str, str | type] = dict(BUILTIN_TASKS)
    for ep in entry_points(group=TASK_ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    found.update(_REGISTERED)
    return found


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``; TaskError listing the valid names otherwise."""
    tasks = available_tasks()
    if name not in tasks:
        raise TaskError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(tasks))}")
    target = tasks[name]
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise TaskError(f"task {name!r}: cannot import {target} ({e})") from e
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise TaskError(f"task {name!r}: {target} is not a nestbench.task.Task subclass")
    return cls
