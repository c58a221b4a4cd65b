"""Run configuration: ``configs/run.yaml`` + ``configs/tasks/<task>.yaml`` + ``key=value``.

The values live in the YAML files; the types and ranges in the dataclass schemas below
(:class:`RunConfig`, and each task's ``config_schema`` for its own section), applied with
``OmegaConf.structured``. So a resolved config is typed: an unknown key is an error naming the
valid keys at that level, and ``trainer.max_epochs=abc``, ``trainer.batch_size=0`` or
``mode=train`` fail when the config is resolved, with the key and what was expected.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from nestbench.errors import UserError


class ConfigError(UserError):
    """A bad configuration key or value."""


def configs_dir() -> Path:
    """The installed ``configs/`` folder (``nestbench.configs``)."""
    return Path(str(resources.files("nestbench.configs")))


def load_yaml(path: str | Path) -> DictConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        cfg = OmegaConf.load(path)
    except Exception as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(cfg, DictConfig):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return cfg


def parse_overrides(overrides: list[str]) -> DictConfig:
    """``["a.b=1", "c=[1,2]"]`` -> a config; values parsed as YAML."""
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got {bad}")
    try:
        return OmegaConf.from_dotlist(list(overrides))
    except Exception as e:
        raise ConfigError(f"cannot parse overrides {overrides}: {e}") from e


def check_keys(base: DictConfig, override: DictConfig, where: str = "") -> None:
    """Raise ConfigError for any key of ``override`` that ``base`` lacks (recursively)."""
    for key in override:
        full = f"{where}{key}"
        if key not in base:
            valid = ", ".join(sorted(str(k) for k in base))
            raise ConfigError(
                f"unknown config key {full!r}; valid keys{' under ' + where.rstrip('.') if where else ''}: {valid}"
            )
        sub_base, sub_over = base[key], override[key]
        if (
            isinstance(sub_base, DictConfig)
            and isinstance(sub_over, DictConfig)
            and key not in ("kwargs",)
        ):
            check_keys(sub_base, sub_over, f"{full}.")


def spec(default=MISSING, *, min=None, max=None, choices=None, gt=None):  # noqa: A002
    """A schema field with an allowed range (``min``/``max`` inclusive, ``gt`` exclusive) or set
    of ``choices``, checked by :func:`validate` (applied to each element of a list)."""
    pairs = (("min", min), ("max", max), ("gt", gt), ("choices", choices))
    meta = {k: v for k, v in pairs if v is not None}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


_spec = spec  # EncoderSection has a field named spec


@dataclass
class EncoderSection:
    spec: str = MISSING
    kwargs: dict[str, Any] = field(default_factory=dict)
    chunk_seconds: float = _spec(gt=0)
    context_seconds: float = _spec(min=0)


@dataclass
class FeaturizerSection:
    layer: int | None = MISSING
    layer_norm: bool = MISSING


@dataclass
class CacheSection:
    enabled: bool = MISSING
    root: str | None = MISSING
    layers: list[int] | None = spec(min=0)
    batch_seconds: float = spec(gt=0)
    memory_mb: float = spec(min=0)


@dataclass
class TrainerSection:
    max_epochs: int = spec(min=1)
    accelerator: str = spec(choices=("auto", "cpu", "gpu", "cuda", "mps"))
    devices: Any = MISSING  # "auto" or a count
    num_nodes: int = spec(min=1)
    precision: str = spec(choices=("auto", "32-true", "32", "bf16-mixed", "16-mixed", "64-true"))
    batch_size: int = spec(min=1)
    batch_seconds: float | None = spec(gt=0)
    num_workers: int = spec(min=0)
    patience: int = spec(min=1)
    gradient_clip_val: float = spec(min=0)
    log_every_n_steps: int = spec(min=1)
    progress: bool = MISSING


@dataclass
class OptimSection:
    lr: float = spec(min=0)
    layer_weights_lr_scale: float = spec(min=0)
    weight_decay: float = spec(min=0)
    encoder_lr: float = spec(min=0)
    freeze_encoder_steps: int = spec(min=0)
    gradient_checkpointing: bool = MISSING
    warmup_steps: int = spec(min=0)
    schedule: str = spec(choices=("constant", "cosine"))
    min_lr_ratio: float = spec(min=0, max=1)


@dataclass
class RunConfig:
    """The sections every run has (values: ``configs/run.yaml``)."""

    task: str = MISSING
    encoder: EncoderSection = field(default_factory=EncoderSection)
    mode: str = spec(choices=("frozen", "finetune"))
    seed: int = spec(min=0)
    data: str | None = MISSING
    data_size: str = spec(choices=("tiny", "small", "default"))
    out: str = MISSING
    featurizer: FeaturizerSection = field(default_factory=FeaturizerSection)
    cache: CacheSection = field(default_factory=CacheSection)
    trainer: TrainerSection = field(default_factory=TrainerSection)
    optim: OptimSection = field(default_factory=OptimSection)


def _check_value(key: str, value, meta: dict) -> None:
    values = list(value) if isinstance(value, list | tuple | ListConfig) else [value]
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        if "choices" in meta and v not in meta["choices"]:
            raise ConfigError(f"{key}: expected one of {', '.join(meta['choices'])}, got {v!r}")
        if "min" in meta and v < meta["min"]:
            raise ConfigError(f"{key}: expected a value >= {meta['min']}, got {v!r}")
        if "max" in meta and v > meta["max"]:
            raise ConfigError(f"{key}: expected a value <= {meta['max']}, got {v!r}")
        if "gt" in meta and not v > meta["gt"]:
            raise ConfigError(f"{key}: expected a value > {meta['gt']}, got {v!r}")


def validate(cfg: DictConfig, schema, where: str = "") -> None:
    """Check the ranges and choices declared with :func:`spec` (recursively) and that no value
    is missing; raises ConfigError naming the key."""
    if not isinstance(cfg, DictConfig):
        raise ConfigError(
            f"{where.rstrip('.') or 'config'}: expected a section of keys, got {cfg!r}"
        )
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        key = f"{where}{f.name}"
        if OmegaConf.is_missing(cfg, f.name):
            raise ConfigError(f"{key}: no value (the config files must set it)")
        value = cfg[f.name]
        if isinstance(hints[f.name], type) and dataclasses.is_dataclass(hints[f.name]):
            validate(value, hints[f.name], f"{key}.")
        elif f.metadata:
            _check_value(key, value, dict(f.metadata))


def _config_error(e: OmegaConfBaseException) -> ConfigError:
    key = getattr(e, "full_key", None)
    msg = str(getattr(e, "msg", e)).split("\n")[0]
    return ConfigError(f"{key}: {msg}" if key else msg)


def typed_run_config(task_section: str | None = None, task_schema=None) -> DictConfig:
    """The empty typed config of a run: :class:`RunConfig` plus ``task_section`` typed by
    ``task_schema`` (a dataclass; untyped when None)."""
    cfg = OmegaConf.structured(RunConfig)
    OmegaConf.set_struct(cfg.encoder.kwargs, False)  # the encoder factory's own keywords
    if task_section:
        OmegaConf.set_struct(cfg, False)
        cfg[task_section] = OmegaConf.structured(task_schema) if task_schema else {}
        OmegaConf.set_struct(cfg, True)
        if not task_schema:
            OmegaConf.set_struct(cfg[task_section], False)  # keys come from the task's YAML
    return cfg


def resolve_run_config(task: str, overrides: list[str] | None = None, **explicit) -> DictConfig:
    """The resolved, typed and validated config of one run.

    Args:
        task: task name (selects ``configs/tasks/<task>.yaml`` and the task's config schema).
        overrides: ``key=value`` strings from the command line.
        explicit: values given as options (``encoder``, ``mode``, ``seed``, ``data``, ``out``);
            None values are ignored. ``encoder`` may be a spec string.

    Raises ConfigError (an unknown key, a value of the wrong type or out of range) and
    TaskError (an unknown task).
    """
    from nestbench.task import get_task

    task_cls = get_task(task)
    schema = getattr(task_cls, "config_schema", None)
    files = [load_yaml(configs_dir() / "run.yaml")]
    task_file = configs_dir() / "tasks" / f"{task}.yaml"
    if task_file.is_file():
        files.append(load_yaml(task_file))
    defaults = OmegaConf.merge(*files)
    has_section = schema is not None or task in defaults
    try:
        cfg = typed_run_config(task if has_section else None, schema)
        cfg = OmegaConf.merge(cfg, defaults)
        cfg.task = task
        over = parse_overrides(overrides or [])
        check_keys(cfg, over)
        cfg = OmegaConf.merge(cfg, over)
        for key, value in explicit.items():
            if value is None:
                continue
            if key == "encoder" and isinstance(value, str):
                cfg.encoder.spec = value
            else:
                cfg[key] = value
    except OmegaConfBaseException as e:
        raise _config_error(e) from e
    validate(cfg, RunConfig)
    devices = cfg.trainer.devices
    if devices not in ("auto", -1) and not (
        isinstance(devices, int) and not isinstance(devices, bool) and devices >= 1
    ):
        raise ConfigError(f"trainer.devices: expected auto, -1 or a count >= 1, got {devices!r}")
    if schema is not None:
        validate(cfg[task], schema, f"{task}.")
    return cfg
