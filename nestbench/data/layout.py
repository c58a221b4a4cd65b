"""The one folder layout of nestbench data, shared by the embedded corpus, every importer and
every task.

A data folder ``ROOT`` holds one sub-folder per task it serves (``asr``, ``sv``, ``diar``,
``slu``), and in it, per split::

    ROOT/<task>/<split>_manifest.json    NeMo-style manifest (paths relative to it)
    ROOT/<task>/<split>_trials.txt       SV: VoxCeleb-format trial list of the split
    ROOT/<task>/<split>/...              per-split reference files (diarization RTTM/UEM)
    ROOT/<task>/splits.json              optional: {"dev": NAME, "eval": [NAME, ...]}

Every task reads ``train``, a dev split (``dev``) and one or more eval splits (the task's
default, ``test``); ``splits.json`` names other ones, e.g. LibriSpeech's ``test-clean`` and
``test-other``. A task given ``ROOT/<task>`` itself, or a folder holding the split files
directly, reads that folder. The writers here are the only place that names these files;
readers also accept the older ``<split>.json`` and ``manifest_<split>.json`` names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nestbench.errors import UserError

from .manifest import atomic_write_text, write_manifest

SPLITS_FILE = "splits.json"
MANIFEST = "{split}_manifest.json"
TRIALS = "{split}_trials.txt"
#: Names readers accept for a split's manifest / trial list (the first is what writers write).
MANIFEST_NAMES = (MANIFEST, "{split}.json", "manifest_{split}.json")
TRIAL_NAMES = (TRIALS, "trials_{split}.txt")
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class LayoutError(UserError):
    """A data folder that lacks a split file, or an output that would replace one."""


def check_split_name(split: str) -> str:
    if not isinstance(split, str) or not _SPLIT_NAME.match(split):
        raise LayoutError(
            f"split name {split!r}: expected letters, digits, '_', '-' or '.' "
            "(e.g. train, dev, test, test-clean)"
        )
    return split


def task_dir(root: str | Path, task: str) -> Path:
    """``ROOT/<task>``: where a data folder keeps one task's files."""
    return Path(root) / task


def manifest_path(root: str | Path, task: str, split: str) -> Path:
    """``ROOT/<task>/<split>_manifest.json``."""
    return task_dir(root, task) / MANIFEST.format(split=check_split_name(split))


def trials_path(root: str | Path, task: str, split: str) -> Path:
    """``ROOT/<task>/<split>_trials.txt`` (speaker verification)."""
    return task_dir(root, task) / TRIALS.format(split=check_split_name(split))


def split_dir(root: str | Path, task: str, split: str) -> Path:
    """``ROOT/<task>/<split>/``: the split's reference files (e.g. ``rttm/``, ``uem/``)."""
    return task_dir(root, task) / check_split_name(split)


@dataclass(frozen=True)
class Splits:
    """The dev split and the eval splits a task folder offers."""

    dev: str = "dev"
    eval: tuple[str, ...] = ("test",)


def write_splits(root: str | Path, task: str, dev: str, eval_splits: Iterable[str]) -> Path:
    """Write ``ROOT/<task>/splits.json`` naming the dev and eval splits."""
    eval_splits = [check_split_name(s) for s in eval_splits]
    if not eval_splits:
        raise LayoutError(f"{task_dir(root, task)}: at least one eval split is needed")
    path = task_dir(root, task) / SPLITS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"dev": check_split_name(dev), "eval": eval_splits}) + "\n")
    return path


def read_splits(folder: str | Path, default: Splits) -> Splits:
    """The splits named by ``folder/splits.json``, or ``default`` when there is none.

    Raises:
        LayoutError: the file is not a JSON object with ``dev`` (a name) and ``eval`` (names).
    """
    path = Path(folder) / SPLITS_FILE
    if not path.is_file():
        return default
    expected = 'expected {"dev": "dev", "eval": ["test", ...]}'
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: not valid JSON ({e}); {expected}") from None
    if not isinstance(doc, dict) or set(doc) - {"dev", "eval"}:
        raise LayoutError(f"{path}: {expected}")
    dev = doc.get("dev", default.dev)
    ev = doc.get("eval", list(default.eval))
    if not isinstance(dev, str) or not isinstance(ev, list) or not ev:
        raise LayoutError(f"{path}: {expected}")
    try:
        return Splits(check_split_name(dev), tuple(check_split_name(s) for s in ev))
    except LayoutError as e:
        raise LayoutError(f"{path}: {e}") from None


def task_folder(data_dir: str | Path, task: str) -> Path:
    """The folder a task reads: ``data_dir/<task>`` when it exists, else ``data_dir``."""
    sub = task_dir(data_dir, task)
    return sub if sub.is_dir() else Path(data_dir)


def _find(folder: Path, names: tuple[str, ...], split: str, what: str) -> Path:
    for pattern in names:
        path = folder / pattern.format(split=split)
        if path.is_file():
            return path
    tried = ", ".join(p.format(split=split) for p in names)
    raise LayoutError(f"{folder}: no {what} for the {split} split (looked for {tried})")


def find_manifest(folder: str | Path, split: str) -> Path:
    """The manifest of ``split`` in a task folder; LayoutError naming what was looked for."""
    return _find(Path(folder), MANIFEST_NAMES, split, "manifest")


def find_trials(folder: str | Path, split: str) -> Path:
    """The trial list of ``split`` in a task folder; LayoutError naming what was looked for."""
    return _find(Path(folder), TRIAL_NAMES, split, "trial list")


def train_manifests(folder: str | Path) -> list[Path]:
    """``folder/train_manifest.json`` and every ``folder/<task>/train_manifest.json``."""
    folder = Path(folder)
    name = MANIFEST.format(split="train")
    return sorted(folder.glob(name)) + sorted(folder.glob(f"*/{name}"))


class Writer:
    """Writes one task's split files under ``ROOT/<task>/``, refusing to replace an existing
    file unless ``force`` (so an import never overwrites a user's edited manifest)."""

    def __init__(self, root: str | Path, task: str, force: bool = False) -> None:
        self.root, self.task, self.force = Path(root), task, force
        self.written: dict[str, Path] = {}

    def claim(self, path: Path) -> Path:
        if path.exists() and not self.force:
            raise LayoutError(f"{path} exists; pass --force (force=True) to replace it")
        return path

    def check_free(self, splits: Iterable[str], trials: Iterable[str] = ()) -> None:
        """Fail before writing anything if one of these split files exists."""
        for s in splits:
            self.claim(manifest_path(self.root, self.task, s))
        for s in trials:
            self.claim(trials_path(self.root, self.task, s))

    def manifest(self, split: str, records: Iterable[dict]) -> Path:
        path = self.claim(manifest_path(self.root, self.task, split))
        self.written[split] = write_manifest(path, records)
        return path

    def trials(self, split: str, trials) -> Path:
        from .trials import write_trials

        path = self.claim(trials_path(self.root, self.task, split))
        write_trials(path, trials)
        self.written[f"{split}_trials"] = path
        return path

    def splits(self, dev: str, eval_splits: Iterable[str]) -> Path:
        path = write_splits(self.root, self.task, dev, eval_splits)
        self.written["splits"] = path
        return path
