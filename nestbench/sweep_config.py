"""The sweep file (``configs/sweeps/<name>.yaml``) and the cells it expands to.

A sweep is one or more grids of encoders x tasks x modes x seeds. Every run gets the sweep's
``overrides``, then those of each ``cells`` entry whose ``match`` fits it (in file order). With
``lr_search``, every (encoder, task, mode) group searched first runs each learning rate of the
grid on its first seed; the other seeds then run at the best one by the dev metric
(:mod:`nestbench.sweep`). Schema and defaults: :class:`SweepConfig`; a wrong key or value is a
:class:`~nestbench.config.ConfigError` naming the file and the key.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nestbench.config import ConfigError, configs_dir, load_yaml, parse_overrides

MODES = ("frozen", "finetune")
EXECUTORS = ("local", "slurm", "submitit-local")


@dataclass
class GridConfig:
    encoders: list[str] = field(default_factory=list)
    tasks: list[str] = field(default_factory=list)
    modes: list[str] = field(default_factory=lambda: ["frozen"])
    seeds: list[int] = field(default_factory=lambda: [0])


@dataclass
class CellOverrides:
    #: keys among encoder, task, mode, seed -> a value or a list of values
    match: dict[str, Any] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)


@dataclass
class LrSearchConfig:
    enabled: bool = True
    key: str = "optim.lr"
    #: a list of values, or {low, high, points}: points log-spaced values from low to high
    grid: Any = None
    #: task -> its own grid (the same two forms)
    per_task: dict[str, Any] = field(default_factory=dict)
    modes: list[str] = field(default_factory=lambda: list(MODES))


@dataclass
class SlurmConfig:
    partition: str | None = None
    timeout_min: int = 240
    nodes: int = 1
    gpus_per_node: int = 0
    tasks_per_node: int = 1  # = trainer.devices for DDP inside a job
    cpus_per_task: int = 8
    mem_gb: int = 32
    array_parallelism: int = 16
    additional: dict[str, Any] = field(default_factory=dict)  # submitit slurm_additional_parameters


@dataclass
class ExecutorConfig:
    name: str = "local"
    jobs: int = 1
    #: torch threads per run (null: the machine's cores / jobs)
    threads: int | None = None
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class SweepConfig:
    name: str = ""
    #: runs go to <out>/<task>/<run-id>/; the sweep's records to <out>/sweeps/<name>/
    out: str = "runs"
    data: str | None = None
    grids: list[GridConfig] = field(default_factory=list)
    overrides: list[str] = field(default_factory=list)
    cells: list[CellOverrides] = field(default_factory=list)
    lr_search: LrSearchConfig | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)
    #: module:function called in every process before it plans or runs (register tasks or
    #: encoders of a package without entry points)
    plugins: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    """One run of the sweep. ``lr`` is set on the points of a learning-rate search and on the
    seeds run at the chosen value; ``stage`` 2 cells wait for their group's choice."""

    encoder: str
    task: str
    mode: str
    seed: int
    overrides: tuple[str, ...]
    lr: float | None = None
    stage: int = 1

    @property
    def group(self) -> tuple[str, str, str]:
        return (self.encoder, self.task, self.mode)

    @property
    def key(self) -> str:
        lr = "" if self.lr is None or self.stage == 2 else f"/lr={self.lr:g}"
        return f"{self.task}/{self.encoder}/{self.mode}/s{self.seed}{lr}"

    @property
    def slug(self) -> str:
        """A file name for the cell (the key's digest keeps two specs that differ only in
        punctuation apart)."""
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:6]
        return re.sub(r"[^A-Za-z0-9_.=-]+", "_", self.key)[:120] + f"-{digest}"

    def to_dict(self) -> dict:
        return {
            "key": self.key,
            "encoder": self.encoder,
            "task": self.task,
            "mode": self.mode,
            "seed": self.seed,
            "lr": self.lr,
            "stage": self.stage,
            "overrides": list(self.overrides),
        }


def sweep_path(name_or_path: str) -> Path:
    """A sweep file: a path, or a name under ``configs/sweeps/`` (the installed configs)."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return path
    return configs_dir() / "sweeps" / f"{name_or_path}.yaml"


def load_sweep(name_or_path: str, overrides: list[str] | None = None) -> SweepConfig:
    """The sweep file merged over the schema, then ``key=value`` overrides (typed, checked)."""
    path = sweep_path(name_or_path)
    raw = load_yaml(path)
    schema = OmegaConf.structured(SweepConfig)
    try:
        cfg = OmegaConf.merge(schema, raw, parse_overrides(list(overrides or [])))
    except OmegaConfBaseException as e:
        raise ConfigError(f"{path}: {e.msg if hasattr(e, 'msg') else e}".splitlines()[0]) from e
    cfg = OmegaConf.to_object(cfg)
    if not cfg.name:
        cfg.name = path.stem
    _check(cfg, path)
    return cfg


def _check(cfg: SweepConfig, path: Path) -> None:
    if not cfg.grids:
        raise ConfigError(f"{path}: grids: expected at least one grid of encoders x tasks")
    for i, g in enumerate(cfg.grids):
        for key in ("encoders", "tasks", "modes", "seeds"):
            if not getattr(g, key):
                raise ConfigError(f"{path}: grids[{i}].{key}: expected a non-empty list")
        bad = [m for m in g.modes if m not in MODES]
        if bad:
            raise ConfigError(f"{path}: grids[{i}].modes: {bad} not among {list(MODES)}")
    for i, c in enumerate(cfg.cells):
        unknown = set(c.match) - {"encoder", "task", "mode", "seed"}
        if unknown:
            raise ConfigError(
                f"{path}: cells[{i}].match: unknown keys {sorted(unknown)} "
                "(expected encoder, task, mode, seed)"
            )
    if cfg.executor.name not in EXECUTORS:
        raise ConfigError(
            f"{path}: executor.name: {cfg.executor.name!r} not among {list(EXECUTORS)}"
        )
    if cfg.executor.jobs < 1:
        raise ConfigError(f"{path}: executor.jobs: expected at least 1, got {cfg.executor.jobs}")
    s = cfg.lr_search
    if s is not None and s.enabled:
        if s.grid is None and not s.per_task:
            raise ConfigError(f"{path}: lr_search.grid: expected a list or {{low, high, points}}")
        for where, grid in [
            ("grid", s.grid),
            *((f"per_task.{k}", v) for k, v in s.per_task.items()),
        ]:
            if grid is not None:
                lr_grid(grid, f"{path}: lr_search.{where}")


def lr_grid(spec: Any, where: str = "lr_search.grid") -> list[float]:
    """The learning rates of a grid: a list, or ``{low, high, points}`` log-spaced."""
    if isinstance(spec, dict):
        try:
            low, high, n = float(spec["low"]), float(spec["high"]), int(spec["points"])
        except (KeyError, TypeError, ValueError) as e:
            raise ConfigError(f"{where}: expected {{low, high, points}} ({e})") from e
        if not (0 < low < high) or n < 2:
            raise ConfigError(f"{where}: expected 0 < low < high and points >= 2")
        step = (math.log10(high) - math.log10(low)) / (n - 1)
        return [float(f"{10 ** (math.log10(low) + i * step):.4g}") for i in range(n)]
    if isinstance(spec, list | tuple) and spec:
        try:
            values = [float(v) for v in spec]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"{where}: expected numbers ({e})") from e
        if any(v <= 0 for v in values) or len(set(values)) != len(values):
            raise ConfigError(f"{where}: expected distinct positive learning rates")
        return values
    raise ConfigError(f"{where}: expected a list of learning rates or {{low, high, points}}")


def _matches(match: dict, encoder: str, task: str, mode: str, seed: int) -> bool:
    here = {"encoder": encoder, "task": task, "mode": mode, "seed": seed}
    for key, want in match.items():
        values = want if isinstance(want, list | tuple) else [want]
        if here[key] not in values and str(here[key]) not in map(str, values):
            return False
    return True


def expand(cfg: SweepConfig) -> tuple[list[Cell], dict[tuple[str, str, str], list[float]]]:
    """Every cell of the sweep (stage-2 cells with ``lr`` None until the search chooses) and the
    lr grid of each searched group. A cell listed by two grids is one cell."""
    cells: dict[str, Cell] = {}
    searched: dict[tuple[str, str, str], list[float]] = {}
    s = cfg.lr_search
    for g in cfg.grids:
        seeds = [int(x) for x in g.seeds]
        for task in g.tasks:
            for encoder in g.encoders:
                for mode in g.modes:
                    group = (encoder, task, mode)
                    base = {
                        seed: tuple(
                            list(cfg.overrides)
                            + [
                                o
                                for c in cfg.cells
                                if _matches(c.match, encoder, task, mode, seed)
                                for o in c.overrides
                            ]
                        )
                        for seed in seeds
                    }
                    search = (
                        s is not None
                        and s.enabled
                        and mode in s.modes
                        and s.per_task.get(task, s.grid) is not None
                        and not any(o.split("=")[0] == s.key for o in base[seeds[0]])
                    )
                    if not search:
                        for seed in seeds:
                            c = Cell(encoder, task, mode, seed, base[seed])
                            cells.setdefault(c.key, c)
                        continue
                    grid = lr_grid(s.per_task.get(task, s.grid), f"lr_search (task {task})")
                    searched[group] = grid
                    for lr in grid:
                        c = Cell(encoder, task, mode, seeds[0], base[seeds[0]], lr=lr)
                        cells.setdefault(c.key, c)
                    for seed in seeds[1:]:
                        c = Cell(encoder, task, mode, seed, base[seed], stage=2)
                        cells.setdefault(c.key, c)
    return list(cells.values()), searched


def with_lr(cell: Cell, key: str) -> list[str]:
    """The cell's overrides with its learning rate set (the key given last wins)."""
    out = list(cell.overrides)
    if cell.lr is not None:
        out.append(f"{key}={cell.lr!r}")
    return out
