"""The encoder registry and ``load_encoder``.

A spec names an encoder in one of these forms, tried in this order:

1. a registered name (``nest-large``, ``fbank``, ``wav2vec2-base``, ...; see ``nestbench encoders list``);
2. a name registered by a third party under the entry-point group ``nestbench.encoders``;
3. a path to a NeMo ``.nemo`` file, a NeMo/Lightning ``.ckpt`` or a plain state-dict file (NEST);
4. ``module:callable``: an importable callable returning an encoder (or an encoder class).

Keyword arguments given to ``load_encoder`` are passed on to the factory (for example
``weights=PATH`` for the torchaudio baselines, ``generation="2.4"`` for NEST checkpoints).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from torch import nn

from nestbench.encoders.base import CONTRACT_ATTRIBUTES
from nestbench.errors import UserError

ENTRY_POINT_GROUP = "nestbench.encoders"
CHECKPOINT_SUFFIXES = (".nemo", ".ckpt", ".pt", ".pth", ".bin")


class EncoderSpecError(UserError):
    """An encoder spec that names nothing loadable, or a loaded object that breaks the contract."""


@dataclass(frozen=True)
class RegisteredEncoder:
    name: str
    factory: Callable[..., nn.Module]
    description: str
    source: str = "built-in"
    #: ``() -> {name: digest}`` of the files the factory reads (e.g. shipped weights): a run's
    #: id depends on them, so replacing such a file makes new runs instead of reusing old ones
    inputs: Callable[[], dict[str, str]] | None = None


_REGISTRY: dict[str, RegisteredEncoder] = {}


def register_encoder(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    description: str = "",
    inputs: Callable[[], dict[str, str]] | None = None,
):
    """Register ``factory`` (a callable returning an encoder) under ``name``; ``inputs``
    returns ``{name: digest}`` of files the factory reads (see :class:`RegisteredEncoder`).

    Usable as a decorator: ``@register_encoder("my-encoder", description="...")``.
    Registering a name twice replaces the earlier entry.
    """

    def add(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = description or (inspect.getdoc(f) or "").split("\n")[0]
        _REGISTRY[name] = RegisteredEncoder(name, f, doc, inputs=inputs)
        return f

    return add(factory) if factory is not None else add


def _entry_points() -> dict[str, RegisteredEncoder]:
    found = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found[ep.name] = RegisteredEncoder(
            ep.name,
            lambda ep=ep, **kwargs: _call_factory(ep.load(), kwargs),
            f"entry point {ep.value}",
            source=f"entry point ({ep.value})",
        )
    return found


def available_encoders() -> dict[str, RegisteredEncoder]:
    """All registered encoders: built-in ones, then entry-point ones (built-ins win on clashes)."""
    _ensure_builtins()
    out = dict(_REGISTRY)
    for name, reg in _entry_points().items():
        out.setdefault(name, reg)
    return out


def _ensure_builtins() -> None:
    # Importing the modules registers their encoders.
    import nestbench.encoders.builtin  # noqa: F401


def _call_factory(obj, kwargs: dict) -> nn.Module:
    """An encoder from ``obj``: an encoder instance, or a callable/class returning one."""
    if isinstance(obj, nn.Module):
        return obj
    return obj(**kwargs)


def validate_contract(encoder: object, spec: str) -> None:
    """Raise EncoderSpecError naming what ``encoder`` lacks of the Encoder contract."""
    if not isinstance(encoder, nn.Module):
        raise EncoderSpecError(
            f"encoder {spec!r} gave a {type(encoder).__name__}, expected a torch.nn.Module"
        )
    missing = [a for a in CONTRACT_ATTRIBUTES if not hasattr(encoder, a)]
    if missing:
        raise EncoderSpecError(
            f"encoder {spec!r} ({type(encoder).__name__}) lacks the contract attributes "
            f"{', '.join(missing)}; see nestbench.encoders.base"
        )


def load_encoder(spec: str | nn.Module, **kwargs) -> nn.Module:
    """Load the encoder named by ``spec`` (see the module docstring), in eval mode.

    Raises:
        EncoderSpecError: the spec names nothing loadable; the message lists the valid names.
    """
    if isinstance(spec, nn.Module):
        validate_contract(spec, type(spec).__name__)
        return spec.eval()
    if not isinstance(spec, str) or not spec:
        raise EncoderSpecError(f"encoder spec must be a non-empty string, got {spec!r}")
    registry = available_encoders()
    if spec.startswith(("hf:", "s3prl:")):
        encoder = _prefixed(spec, kwargs)
    elif spec in registry:
        encoder = registry[spec].factory(**kwargs)
    elif Path(spec).expanduser().is_file():
        from nestbench.encoders.nest import NestEncoder

        encoder = NestEncoder.from_checkpoint(Path(spec).expanduser(), **kwargs)
    elif ":" in spec and Path(spec).suffix not in CHECKPOINT_SUFFIXES:
        encoder = _call_factory(_import_callable(spec), kwargs)
    else:
        looks_like_path = "/" in spec or Path(spec).suffix in CHECKPOINT_SUFFIXES
        why = f"no such file: {spec}" if looks_like_path else f"unknown encoder {spec!r}"
        raise EncoderSpecError(
            f"{why}. Valid specs: a registered name ({', '.join(sorted(registry))}), "
            "a path to a .nemo/.ckpt/state-dict file, or module:callable"
        )
    validate_contract(encoder, spec)
    return encoder.eval()


def _prefixed(spec: str, kwargs: dict) -> nn.Module:
    """``hf:PATH`` (a transformers folder) or ``s3prl:NAME`` (an upstream, ``ckpt=`` a file)."""
    kind, _, rest = spec.partition(":")
    if not rest:
        raise EncoderSpecError(
            f"encoder {spec!r}: expected {kind}:{'PATH' if kind == 'hf' else 'NAME'}"
        )
    try:
        if kind == "hf":
            from nestbench.encoders.hf import HFEncoder

            return HFEncoder(rest, **kwargs)
        from nestbench.encoders.s3prl_upstream import S3PRLEncoder

        return S3PRLEncoder(rest, **kwargs)
    except TypeError as e:
        raise EncoderSpecError(f"encoder {spec!r}: {e}") from e
    except ValueError as e:  # HFEncoderError, S3PRLEncoderError
        raise EncoderSpecError(str(e)) from e


def _import_callable(spec: str):
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EncoderSpecError(
            f"encoder {spec!r}: cannot import module {module_name!r} ({e})"
        ) from e
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise EncoderSpecError(f"encoder {spec!r}: module {module_name!r} has no {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj) and not isinstance(obj, nn.Module):
        raise EncoderSpecError(f"encoder {spec!r}: {attr!r} is neither callable nor a module")
    return obj
