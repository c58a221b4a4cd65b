"""Write a :class:`~nestbench.encoders.nest.NestModel` as a ``.nemo`` file NeMo can restore.

The layout is NeMo's own (``SaveRestoreConnector``): an uncompressed tar holding ``./``,
``./model_config.yaml`` (the model config as YAML, with ``target`` naming
``EncDecDenoiseMaskedTokenPredModel`` and a ``nemo_version`` that fixes the preprocessing
generation) and ``./model_weights.ckpt`` (``torch.save`` of the flat state dict, NeMo's keys;
``quantizer.codebooks`` in float64 as NeMo keeps it; the encoder and decoder optionally at
float16, which NeMo's ``load_state_dict`` casts to its float32 modules). The config carries the
sections NeMo's constructor reads (``spec_augment`` included, disabled) in NeMo's order.
``nestbench.load_encoder(path)`` / :func:`~nestbench.encoders.nest.load_nest` read it back.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
import time
from pathlib import Path

import torch

from .checkpoint import CONFIG_NAME, WEIGHTS_NAME

SPEC_AUGMENT_OFF = {
    "_target_": "nemo.collections.asr.modules.SpectrogramAugmentation",
    "freq_masks": 0,
    "time_masks": 0,
    "freq_width": 27,
    "time_width": 0.05,
}
"""NeMo's NEST constructor builds ``spec_augment`` though pretraining never uses it."""

_ORDER = (
    "sample_rate",
    "num_classes",
    "num_books",
    "code_dim",
    "squeeze_single",
    "mask_position",
    "train_ds",
    "validation_ds",
    "preprocessor",
    "spec_augment",
    "masking",
    "quantizer",
    "encoder",
    "decoder",
    "loss",
    "optim",
)
_TAIL = ("target", "nemo_version")


def nemo_config(model, optim: dict | None = None, extra: dict | None = None) -> dict:
    """The ``model_config.yaml`` dict of ``model`` (a NestModel) for a .nemo file.

    optim: NeMo ``optim`` section to record (e.g. the pretraining optimiser and schedule).
    extra: further top-level keys (e.g. provenance); must not shadow the model's sections.
    """
    cfg = model.to_nemo_config()
    cfg.setdefault("train_ds", None)
    cfg.setdefault("validation_ds", None)
    cfg.setdefault("spec_augment", dict(SPEC_AUGMENT_OFF))
    if optim is not None:
        cfg["optim"] = optim
    for key, value in (extra or {}).items():
        if key in _ORDER or key in _TAIL:
            raise ValueError(f"save_nemo: extra key {key!r} would replace the model's own section")
        cfg[key] = value
    ordered = {k: cfg[k] for k in _ORDER if k in cfg}
    ordered.update((k, v) for k, v in cfg.items() if k not in ordered and k not in _TAIL)
    ordered.update((k, cfg[k]) for k in _TAIL if k in cfg)
    return ordered


#: The parts whose floating-point weights ``save_nemo(..., dtype=...)`` stores at that dtype; the
#: preprocessor, quantizer and masking stay as they are, so features and targets do not move.
CAST_PARTS = ("encoder.", "decoder.")
WEIGHT_DTYPES = {"float32": None, "float16": torch.float16, "bfloat16": torch.bfloat16}


def nemo_state_dict(model, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """``model.state_dict()`` on the CPU, contiguous, codebooks in float64 (NeMo's dtype); with
    ``dtype``, the encoder's and decoder's floating-point tensors at that dtype (NeMo and
    nestbench load them into float32 modules: ``load_state_dict`` casts)."""
    state = {}
    for key, value in model.state_dict().items():
        value = value.detach().cpu().contiguous()
        if key == "quantizer.codebooks":
            value = value.double()
        elif dtype is not None and value.is_floating_point() and key.startswith(CAST_PARTS):
            value = value.to(dtype)
        state[key] = value.clone()
    return state


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def save_nemo(
    model,
    path: str | Path,
    optim: dict | None = None,
    extra: dict | None = None,
    dtype: str = "float32",
):
    """Write ``model`` (a NestModel, with or without its pretraining parts) to ``path``;
    ``dtype`` "float16" or "bfloat16" stores the encoder and decoder weights at half the size
    (:func:`nemo_state_dict`).

    The file is written to a temporary sibling and renamed into place (readers never see a
    partial file). Returns ``Path(path)``. See the module docstring for the layout.
    """
    from omegaconf import OmegaConf

    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"save_nemo: dtype {dtype!r}; one of {', '.join(WEIGHT_DTYPES)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    config = OmegaConf.to_yaml(OmegaConf.create(nemo_config(model, optim, extra)))
    weights = io.BytesIO()
    torch.save(nemo_state_dict(model, WEIGHT_DTYPES[dtype]), weights)
    now = time.time()
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f, tarfile.open(fileobj=f, mode="w:") as tar:
            root = tarfile.TarInfo("./")
            root.type = tarfile.DIRTYPE
            root.mode = 0o755
            root.mtime = int(now)
            tar.addfile(root)
            _add(tar, f"./{CONFIG_NAME}", config.encode("utf-8"), now)
            _add(tar, f"./{WEIGHTS_NAME}", weights.getvalue(), now)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path
