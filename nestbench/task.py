"""The Task contract and the task registry.

A task (a folder under ``tasks/``, installed as ``nestbench.tasks.<name>``, or a third-party class
registered under the entry-point group ``nestbench.tasks``) declares its name, the manifest fields
it needs, its primary metric and whether lower is better, and implements:

- ``load(data_dir) -> dict[str, list[dict]]``: the ``train``/``dev``/``test`` records (manifest
  dicts with absolute ``audio_filepath``), after reading whatever else it needs (trials, RTTM);
- ``build_head(hidden_size, frame_shift) -> nn.Module``;
- ``target(item, start, duration)``: the training target of a record, for the crop
  ``[start, start + duration)`` seconds (``duration`` None: to the end);
- ``collate_targets(targets)``: batch them;
- ``loss(head, x [B, T, D], lengths [B], targets) -> scalar``;
- ``predict(head, x [B, T, D], lengths [B]) -> list`` of per-utterance outputs (embeddings,
  logits, ...);
- ``evaluate(split, predict, out_dir) -> dict`` of metrics: ``predict(records)`` returns the
  outputs for any records, so the task can score trials, use a training cohort, etc.; with
  ``out_dir`` it also writes its predictions in the task's native format there.

Every task meets every encoder through the featurizer's [B, T, D] output: utterance-level tasks pool
over T, sequence tasks decode over T, frame-level tasks predict per frame (frame rate from
``frame_shift``).
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import torch
from torch import nn

TASK_ENTRY_POINT_GROUP = "nestbench.tasks"
BUILTIN_TASKS = {"sv": "nestbench.tasks.sv:SVTask"}


class TaskError(ValueError):
    """A task that cannot run on the data given (missing files, unknown utterances, ...)."""


class Task:
    """Base class of downstream tasks (see the module docstring for the contract)."""

    name: str = ""
    needs: tuple[str, ...] = ("audio_filepath",)
    primary_metric: str = ""
    lower_is_better: bool = True
    #: Training crops, seconds (None: whole utterances). Evaluation always uses whole utterances.
    crop_seconds: float | None = None

    def __init__(self, cfg):
        self.cfg = cfg

    def load(self, data_dir: Path) -> dict[str, list[dict]]:
        raise NotImplementedError

    def build_head(self, hidden_size: int, frame_shift: int) -> nn.Module:
        raise NotImplementedError

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

    def evaluate(self, split: str, predict, out_dir: Path | None = None) -> dict:
        raise NotImplementedError

    def check_items(self, split: str, items: list[dict], source: str) -> None:
        """Raise TaskError naming ``source`` when a record lacks a field this task needs."""
        for i, item in enumerate(items):
            missing = [f for f in self.needs if item.get(f) in (None, "")]
            if missing:
                raise TaskError(
                    f"{source}: record {i + 1} of the {split} split lacks "
                    f"{', '.join(missing)} (the {self.name} task needs {', '.join(self.needs)})"
                )


def available_tasks() -> dict[str, str]:
    """Task name -> ``module:Class`` for built-in tasks and the ``nestbench.tasks`` entry points."""
    found = dict(BUILTIN_TASKS)
    for ep in entry_points(group=TASK_ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def get_task(name: str) -> type[Task]:
    """The task class registered as ``name``; TaskError listing the valid names otherwise."""
    tasks = available_tasks()
    if name not in tasks:
        raise TaskError(f"unknown task {name!r}; valid tasks: {', '.join(sorted(tasks))}")
    module, _, attr = tasks[name].partition(":")
    return getattr(importlib.import_module(module), attr)
