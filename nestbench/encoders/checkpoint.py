"""Read NeMo ``.nemo`` files and PyTorch checkpoints safely, without NeMo.

:func:`read_checkpoint` accepts, recognised by content rather than by name:

- a ``.nemo`` file: a tar (or tar.gz) holding ``model_config.yaml`` and ``model_weights.ckpt``
  (optionally under ``./``). Only those two members are read, straight from the archive; nothing is
  extracted to disk, and archives with unsafe members (absolute paths, ``..``, links that
  escape, devices) are refused;
- a Lightning / NeMo ``.ckpt``: a dict with ``state_dict`` (config from
  ``hyper_parameters.cfg`` when present);
- a plain state dict (``.pt``, ``.pth``, ``.bin``, ...).

Weights are always loaded with ``torch.load(map_location="cpu", weights_only=True)``; float64
tensors are cast to float32. Every failure raises :class:`CheckpointError` naming the file.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

import torch

from nestbench.errors import UserError

CONFIG_NAME = "model_config.yaml"
WEIGHTS_NAME = "model_weights.ckpt"


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file."""


@dataclass
class Checkpoint:
    """What a checkpoint file holds.

    config: the model config as plain dicts/lists (NeMo's ``model_config.yaml``), or None.
    state_dict: parameter and buffer name -> tensor (float64 cast to float32).
    nemo_version: the ``nemo_version`` recorded in the config, or None.
    path: the file it was read from.
    """

    config: dict | None
    state_dict: dict[str, torch.Tensor]
    nemo_version: str | None
    path: Path


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Read a ``.nemo`` archive, a Lightning ``.ckpt`` or a plain state-dict file (see module doc)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or _looks_like_tar(head):
        return _read_nemo(path, compressed=head[:2] == b"\x1f\x8b")
    if head[:4] == b"PK\x03\x04":  # torch.save's default (zip) format
        return _from_torch_object(path, _torch_load(path, path))
    try:  # legacy (non-zip) torch.save files
        obj = _torch_load(path, path)
    except CheckpointError as e:
        raise CheckpointError(
            f"{path}: neither a .nemo archive (tar) nor a PyTorch checkpoint ({e.__cause__})"
        ) from e.__cause__
    return _from_torch_object(path, obj)


def _looks_like_tar(head: bytes) -> bool:
    return len(head) >= 262 and head[257:262] == b"ustar"


def _torch_load(source, path: Path):
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors come in many types
        raise CheckpointError(f"{path}: torch.load failed: {type(e).__name__}: {e}") from e


def _from_torch_object(path: Path, obj) -> Checkpoint:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(obj).__name__}")
    config = None
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        hp = obj.get("hyper_parameters")
        if isinstance(hp, dict) and isinstance(hp.get("cfg"), dict):
            config = _plain(hp["cfg"])
        obj = obj["state_dict"]
    state = _clean_state(path, obj)
    version = config.get("nemo_version") if config else None
    return Checkpoint(config, state, None if version is None else str(version), path)


def _clean_state(path: Path, obj: dict) -> dict[str, torch.Tensor]:
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(
            f"{path}: not a state dict: {len(bad)} entries are not (name -> tensor), e.g. {bad[:3]}"
        )
    return {k: (v.float() if v.dtype == torch.float64 else v) for k, v in obj.items()}


def _plain(cfg):
    """DictConfig/ListConfig or nested containers -> plain dicts and lists."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(cfg, (DictConfig, ListConfig)):
            return OmegaConf.to_container(cfg, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    if isinstance(cfg, dict):
        return {k: _plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [_plain(v) for v in cfg]
    return cfg


def parse_config(text: str, path: Path) -> dict:
    """A ``model_config.yaml`` text -> plain dict (interpolations resolved)."""
    from omegaconf import OmegaConf

    try:
        cfg = OmegaConf.to_container(OmegaConf.create(text), resolve=True)
    except Exception as e:
        raise CheckpointError(f"{path}: cannot parse {CONFIG_NAME}: {e}") from e
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: {CONFIG_NAME} is not a mapping")
    return cfg


def _check_member(member: tarfile.TarInfo, path: Path) -> None:
    """Refuse names and link targets that could point outside the archive, and devices."""
    name = member.name
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":") or ".." in parts:
        raise CheckpointError(f"{path}: unsafe member name {name!r} in the archive")
    if member.issym() or member.islnk():
        target = member.linkname.replace("\\", "/")
        base = posixpath.dirname(name) if member.issym() else ""
        resolved = posixpath.normpath(posixpath.join(base, target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise CheckpointError(
                f"{path}: unsafe link {name!r} -> {member.linkname!r} in the archive"
            )
    elif not (member.isfile() or member.isdir()):
        raise CheckpointError(f"{path}: unsupported member {name!r} (device, fifo or special file)")


def _member_key(name: str) -> str:
    """'./model_config.yaml' and 'model_config.yaml' -> 'model_config.yaml'."""
    return posixpath.normpath(name.replace("\\", "/")).lstrip("/")


def _read_nemo(path: Path, compressed: bool) -> Checkpoint:
    try:
        with tarfile.open(path, mode="r:*") as tar:
            members = tar.getmembers()
            for m in members:
                _check_member(m, path)
            found = {_member_key(m.name): m for m in members}
            missing = [n for n in (CONFIG_NAME, WEIGHTS_NAME) if n not in found]
            if missing:
                raise CheckpointError(
                    f"{path}: the .nemo archive has no {' and no '.join(missing)} "
                    f"(members: {sorted(found)[:10]})"
                )
            for n in (CONFIG_NAME, WEIGHTS_NAME):
                if not found[n].isfile():
                    raise CheckpointError(f"{path}: {n} is not a regular file in the archive")
            config = parse_config(_read_member(tar, found[CONFIG_NAME], path).decode(), path)
            if compressed:  # seeking in a gzip stream is slow: decompress the member once
                obj = _torch_load(io.BytesIO(_read_member(tar, found[WEIGHTS_NAME], path)), path)
            else:  # stream it straight from the archive, no copy in memory
                obj = _torch_load(tar.extractfile(found[WEIGHTS_NAME]), path)
    except CheckpointError:
        raise
    except (tarfile.TarError, EOFError, OSError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path}: not a readable .nemo archive (truncated or corrupt tar?): {e}"
        ) from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: {WEIGHTS_NAME} is not a state dict")
    version = config.get("nemo_version")
    return Checkpoint(
        config, _clean_state(path, obj), None if version is None else str(version), path
    )


def _read_member(tar: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> bytes:
    f = tar.extractfile(member)
    if f is None:
        raise CheckpointError(f"{path}: cannot read {member.name!r} from the archive")
    data = f.read()
    if len(data) != member.size:
        raise CheckpointError(
            f"{path}: {member.name!r} is truncated ({len(data)} of {member.size} bytes)"
        )
    return data
