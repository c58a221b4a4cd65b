"""Run configuration: ``configs/run.yaml`` + ``configs/tasks/<task>.yaml`` + ``key=value``.

Overrides are validated against the defaults: an unknown key is an error naming the valid keys at
that level (task heads declare theirs in their task yaml).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
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


def resolve_run_config(task: str, overrides: list[str] | None = None, **explicit) -> DictConfig:
    """The resolved config of one run.

    Args:
        task: task name (selects ``configs/tasks/<task>.yaml``).
        overrides: ``key=value`` strings from the command line.
        explicit: values given as options (``encoder``, ``mode``, ``seed``, ``data``, ``out``);
            None values are ignored. ``encoder`` may be a spec string.
    """
    cfg = load_yaml(configs_dir() / "run.yaml")
    task_file = configs_dir() / "tasks" / f"{task}.yaml"
    if task_file.is_file():
        cfg = OmegaConf.merge(cfg, load_yaml(task_file))
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
    if cfg.mode not in ("frozen", "finetune"):
        raise ConfigError(f"mode must be frozen or finetune, got {cfg.mode!r}")
    return cfg
