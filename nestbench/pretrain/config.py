"""Pretraining configuration and the model it describes.

:func:`resolve_pretrain_config` merges ``configs/pretrain/base.yaml``, a ``--config`` file (a path
or the name of a file in ``configs/pretrain/``; ``extends: NAME`` in it merges that config
first), ``--data`` manifests and ``key=value`` overrides; unknown keys are errors naming the
valid ones (``model.encoder.*`` is checked against the FastConformer settings). :func:`build_model` turns ``model:`` (or ``init_from``) into a
:class:`~nestbench.encoders.nest.NestModel` with its pretraining parts.
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nestbench.config import ConfigError, check_keys, configs_dir, load_yaml, parse_overrides
from nestbench.data.layout import train_manifests
from nestbench.encoders.fastconformer import NEST_SIZES, FastConformerConfig
from nestbench.encoders.nemo_writer import WEIGHT_DTYPES
from nestbench.encoders.nest import NestModel, load_nest, nest_config
from nestbench.encoders.ssl_modules import (
    MultiSoftmaxDecoder,
    RandomBlockMasking,
    RandomProjectionVectorQuantizer,
)

log = logging.getLogger("nestbench.pretrain")

ENCODER_KEYS = tuple(
    f.name for f in dataclasses.fields(FastConformerConfig) if f.name != "masked_subsampling"
)

#: The parts of a NestModel ``init_include`` may name.
MODEL_PARTS = ("preprocessor", "encoder", "quantizer", "mask_processor", "decoder")


def pretrain_configs_dir() -> Path:
    """The installed ``configs/pretrain/`` folder."""
    return configs_dir() / "pretrain"


def find_config(name: str | Path) -> Path:
    """``name`` as a path, else ``configs/pretrain/<name>[.yaml]``. Raises ConfigError."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    for cand in (pretrain_configs_dir() / str(name), pretrain_configs_dir() / f"{name}.yaml"):
        if cand.is_file():
            return cand
    known = sorted(p.stem for p in pretrain_configs_dir().glob("*.yaml") if p.stem != "base")
    raise ConfigError(
        f"pretraining config {str(name)!r} not found (neither a file nor one of: "
        f"{', '.join(known)})"
    )


def expand_data(path: str | Path) -> list[Path]:
    """A manifest path as is; a folder -> its ``train_manifest.json`` and
    ``<task>/train_manifest.json`` (a data folder, :mod:`nestbench.data.layout`). Raises
    ConfigError."""
    path = Path(path).expanduser()
    if not path.is_dir():
        return [path]
    found = train_manifests(path)
    if not found:
        raise ConfigError(f"{path}: a folder without train_manifest.json or */train_manifest.json")
    return found


def _checked_merge(base: DictConfig, over: DictConfig, where: str) -> DictConfig:
    """Merge ``over`` into ``base`` after checking its keys (``model.encoder`` against the
    FastConformer settings, ``data.*`` lists replaced, not merged)."""
    over = over.copy()
    enc = None
    if "model" in over and isinstance(over.model, DictConfig) and "encoder" in over.model:
        enc = over.model.pop("encoder")
        bad = [k for k in (enc or {}) if k not in ENCODER_KEYS]
        if bad:
            raise ConfigError(
                f"{where}: unknown model.encoder setting(s) {bad}; valid: {', '.join(ENCODER_KEYS)}"
            )
    try:
        check_keys(base, over)
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None
    cfg = OmegaConf.merge(base, over)
    if enc:
        cfg.model.encoder = OmegaConf.merge(cfg.model.encoder, enc)
    return cfg


def _config_chain(config: str | Path) -> list[tuple[Path, DictConfig]]:
    """The config file ``config`` and the files it ``extends:`` (a name or path, recursively),
    the most basic first. Raises ConfigError on a cycle."""
    chain: list[tuple[Path, DictConfig]] = []
    name: str | Path | None = config
    while name is not None:
        path = find_config(name)
        if any(path.resolve() == p.resolve() for p, _ in chain):
            raise ConfigError(f"{path}: `extends:` loops back to a config it extends")
        over = load_yaml(path)
        name = over.pop("extends", None)
        chain.append((path, over))
    return chain[::-1]


def resolve_pretrain_config(
    config: str | Path | None = None,
    data: list[str] | tuple[str, ...] = (),
    overrides: list[str] | tuple[str, ...] = (),
) -> DictConfig:
    """The resolved pretraining config (see the module docstring). Raises ConfigError."""
    cfg = load_yaml(pretrain_configs_dir() / "base.yaml")
    if config is not None:
        for path, over in _config_chain(config):
            cfg = _checked_merge(cfg, over, str(path))
    if data:
        cfg.data.train = list(cfg.data.train) + [str(m) for d in data for m in expand_data(d)]
    cfg = _checked_merge(cfg, parse_overrides(list(overrides)), "override")
    _validate(cfg)
    return cfg


def _validate(cfg: DictConfig) -> None:
    if cfg.init_from is None and cfg.model.size not in NEST_SIZES:
        raise ConfigError(f"model.size={cfg.model.size!r}; known sizes: {', '.join(NEST_SIZES)}")
    if cfg.data.embedded not in (None, "tiny", "small", "default"):
        raise ConfigError(
            f"data.embedded must be null, tiny, small or default: {cfg.data.embedded}"
        )
    if cfg.data.pool_hours is not None:
        if cfg.data.embedded is None:
            raise ConfigError(
                "data.pool_hours needs data.embedded (the corpus the pool comes from)"
            )
        if float(cfg.data.pool_hours) <= 0:
            raise ConfigError(f"data.pool_hours must be > 0, got {cfg.data.pool_hours}")
    if str(cfg.nemo_dtype) not in WEIGHT_DTYPES:
        raise ConfigError(f"nemo_dtype={cfg.nemo_dtype!r}: one of {', '.join(WEIGHT_DTYPES)}")
    if cfg.init_include is not None:
        parts = cfg.init_include
        listed = not isinstance(parts, str) and all(str(p) in MODEL_PARTS for p in parts)
        if cfg.init_from is None or not listed:
            raise ConfigError(
                f"init_include={parts}: needs init_from and a list of parts among "
                f"{', '.join(MODEL_PARTS)}"
            )
    if str(cfg.optim.name).lower() != "adamw":
        raise ConfigError(f"optim.name={cfg.optim.name!r}: only adamw is supported")
    if str(cfg.optim.sched.name) != "NoamAnnealing":
        raise ConfigError(f"optim.sched.name={cfg.optim.sched.name!r}: only NoamAnnealing")
    for key in ("train", "val", "noise"):
        if isinstance(cfg.data[key], str):
            cfg.data[key] = [cfg.data[key]]
    if not cfg.data.train and cfg.data.embedded is None:
        raise ConfigError(
            "no training audio: give --data MANIFEST (or data.train=[...]) or data.embedded=default"
        )


def model_config(cfg: DictConfig) -> dict:
    """The NeMo-style model config dict of a new model from ``cfg.model``."""
    m = cfg.model
    enc = FastConformerConfig(
        **{**NEST_SIZES[m.size], **OmegaConf.to_container(m.encoder, resolve=True)}
    )
    out = nest_config(enc, int(m.num_classes), str(m.generation))
    books, code_dim = int(m.num_books), int(m.code_dim)
    out.update(num_books=books, code_dim=code_dim)
    out["quantizer"].update(num_books=books, code_dim=code_dim)
    out["decoder"]["num_decoders"] = books
    out["loss"].update(num_decoders=books, mask_threshold=float(m.mask_threshold))
    out["masking"].update(mask_prob=float(m.mask_prob), block_size=int(m.block_size))
    return out


def _add_ssl_parts(model: NestModel, cfg: DictConfig) -> NestModel:
    """Give an encoder-only model (e.g. from an ASR checkpoint) fresh pretraining parts."""
    m = cfg.model
    feat, d = model.preprocessor.n_mels, model.encoder.cfg.d_model
    k = model.encoder.cfg.subsampling_factor
    if model.quantizer is None:
        model.quantizer = RandomProjectionVectorQuantizer(
            feat, int(m.code_dim), int(m.num_classes), int(m.num_books), combine_time_steps=k
        )
    if model.mask_processor is None:
        model.mask_processor = RandomBlockMasking(feat, float(m.mask_prob), int(m.block_size))
    if model.decoder is None:
        q = model.quantizer
        model.decoder = MultiSoftmaxDecoder(d, q.num_classes, q.num_books, use_bias=True)
    return model


def _init_parts(cfg: DictConfig) -> NestModel:
    """A new model from ``model:`` whose ``init_include`` parts are copied from ``init_from``
    (NeMo's ``init_from_nemo_model`` with ``include``): e.g. a pretrained encoder under new
    quantizer targets and a new decoder. Raises ConfigError when a part is missing from the
    checkpoint or its weights do not fit the part ``model:`` describes."""
    path = Path(str(cfg.init_from)).expanduser()
    parts = [str(p) for p in cfg.init_include]
    model = NestModel.from_config(model_config(cfg))
    source = load_nest(path)
    for part in parts:
        src, dst = getattr(source, part), getattr(model, part)
        if src is None:
            raise ConfigError(f"init_include: {path} has no {part}")
        theirs, ours = src.state_dict(), dst.state_dict()
        if set(theirs) != set(ours):
            diff = sorted(set(theirs) ^ set(ours))[:3]
            raise ConfigError(
                f"init_include: {path}'s {part} does not fit model: (keys differ, e.g. {diff})"
            )
        for key, value in theirs.items():
            if value.shape != ours[key].shape:
                raise ConfigError(
                    f"init_include: {path}'s {part}.{key} has shape {tuple(value.shape)}, "
                    f"model: gives {tuple(ours[key].shape)}"
                )
        dst.load_state_dict(theirs)
    return model


def build_model(cfg: DictConfig) -> NestModel:
    """A NestModel for pretraining: ``init_from`` loaded (any NEST checkpoint: its architecture
    and weights; missing pretraining parts are added from ``model:``, and ``model:``'s masking
    and ``mask_threshold``, which hold no weights, apply; with ``init_include`` only those parts, the
    rest new from ``model:``), else a new one from ``model:`` with random weights from the
    current torch seed."""
    if cfg.init_from and cfg.init_include:
        return _init_parts(cfg).train()
    if cfg.init_from:
        path = Path(str(cfg.init_from)).expanduser()
        model = load_nest(path)
        if model.quantizer is None or model.decoder is None or model.mask_processor is None:
            warnings.warn(
                f"{path}: no quantizer/masking/decoder in the checkpoint; new random ones are used",
                stacklevel=2,
            )
            model = _add_ssl_parts(model, cfg)
        return _apply_masking(model, cfg).train()
    return NestModel.from_config(model_config(cfg)).train()


def _apply_masking(model: NestModel, cfg: DictConfig) -> NestModel:
    """``model:``'s settings that hold no weights (``mask_prob``, ``block_size``,
    ``mask_threshold``) on a model loaded from ``init_from``, as NeMo's config does under
    ``init_from_nemo_model``; the checkpoint's architecture and weights stay."""
    m = cfg.model
    masking = model.mask_processor
    new = (float(m.mask_prob), int(m.block_size), float(m.mask_threshold))
    old = (masking.mask_prob, masking.block_size, float(model.loss_cfg["mask_threshold"]))
    if new != old:
        log.info(
            "init_from %s: masking from model: (mask_prob %g, block_size %d, mask_threshold %g; "
            "the checkpoint's: %g, %d, %g)",
            cfg.init_from,
            *new,
            *old,
        )
    masking.mask_prob, masking.block_size = new[0], new[1]
    model.loss_cfg["mask_threshold"] = new[2]
    return model
