"""The result of one run: the schema ``result.json`` is written from and read back by.

Every metric is stored per eval split as ``{"value": v, "ci95": [lo, hi]}`` (no ``ci95`` where no
interval is defined), so the leaderboard and any other reader need no knowledge of the task.
``schema`` is the format version; :meth:`RunResult.read` refuses files it does not understand.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from nestbench.data.manifest import atomic_write_text
from nestbench.errors import UserError
from nestbench.metrics.base import as_score_dict

SCHEMA_VERSION = 1

#: Config keys that do not change a run's result (excluded from the run id; the leaderboard
#: does not split rows on them either).
NON_RESULT_KEYS = (
    "out",
    "trainer.progress",
    "trainer.num_workers",
    "cache.root",
    "cache.batch_seconds",
    "cache.enabled",
    "cache.memory_mb",
)


#: Config keys added after runs were made, at the value that does what runs did before they
#: existed: a config holding that value has the run id (and leaderboard row) it had without the
#: key, so finished results stay valid (a sweep resumes them, the leaderboard merges them).
NEUTRAL_DEFAULTS = {
    "optim.schedule": "constant",
    "optim.min_lr_ratio": 0.0,
}


def drop_neutral(flat: dict) -> dict:
    """``flat`` (dotted key -> value) without the :data:`NEUTRAL_DEFAULTS` at their value."""
    return {k: v for k, v in flat.items() if k not in NEUTRAL_DEFAULTS or v != NEUTRAL_DEFAULTS[k]}


class ResultError(UserError):
    """A result.json that cannot be read as a RunResult."""


@dataclass
class RunResult:
    """One finished run (see the module docstring for the metric format)."""

    task: str
    encoder: str
    mode: str
    seed: int
    run_id: str
    primary_metric: str
    lower_is_better: bool
    #: split -> metric name -> {"value", "ci95"?}
    metrics: dict[str, dict[str, dict]]
    eval_splits: list[str]
    dev_split: str = "dev"
    #: the dev metric that selected ``best_epoch`` ("" in results written before it existed:
    #: the primary metric)
    dev_metric: str = ""
    #: per epoch: {"epoch", <dev metric values>}
    dev_history: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    #: softmax weights before/after, the layers' scales and effective shares, their indices
    layer_weights: dict = field(default_factory=dict)
    encoder_info: dict = field(default_factory=dict)
    data: str = ""
    #: digests of the encoder's files and of the data folder (part of the run id)
    inputs: dict = field(default_factory=dict)
    cache: str | None = None
    checkpoint: str | None = None
    #: what the task tuned on the dev split after training (diar: its post-processing)
    tuned: dict = field(default_factory=dict)
    #: files the task wrote into the run folder (name -> path relative to it)
    artifacts: dict[str, str] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    git_revision: str | None = None
    device: str = "cpu"
    finished_at: str = ""
    schema: int = SCHEMA_VERSION

    def __post_init__(self):
        self.metrics = {
            split: {name: as_score_dict(v) for name, v in values.items()}
            for split, values in self.metrics.items()
        }

    def value(self, metric: str | None = None, split: str | None = None) -> float:
        """A metric's value (default: the primary metric on the first eval split)."""
        split = split or self.eval_splits[0]
        return self.metrics[split][metric or self.primary_metric]["value"]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def write(self, path: Path) -> None:
        """Write atomically (a reader never sees half a file)."""
        atomic_write_text(Path(path), json.dumps(self.to_dict(), indent=2, default=str) + "\n")

    @classmethod
    def from_dict(cls, data: dict, source: str = "result") -> RunResult:
        version = data.get("schema")
        if version != SCHEMA_VERSION:
            raise ResultError(
                f"{source}: result schema {version!r}, this nestbench reads schema "
                f"{SCHEMA_VERSION} (re-run it with --force, or use the nestbench that wrote it)"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        required = {
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        }
        missing = sorted(required - set(data))
        if missing:
            raise ResultError(f"{source}: lacks {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in data.items() if k in names})
        except (TypeError, ValueError, AttributeError) as e:
            raise ResultError(f"{source}: {e}") from e

    @classmethod
    def read(cls, path: Path) -> RunResult:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ResultError(f"{path}: not a readable result ({e})") from e
        if not isinstance(data, dict):
            raise ResultError(f"{path}: expected a JSON object")
        return cls.from_dict(data, str(path))
