"""The embedded corpus as a cache: generated on first use, reused afterwards.

The corpus of a (size, seed, generator version) lives in
``$NESTBENCH_DATA/<size>-seed<seed>-v<version>/``, ``$NESTBENCH_DATA`` defaulting to
``$XDG_CACHE_HOME/nestbench/corpus`` (``~/.cache/nestbench/corpus``). It is generated into a
temporary sibling folder and renamed into place when complete, under a file lock, so concurrent
runs generate it once and never see a partial corpus.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path

from .synth import GENERATOR_VERSION, SIZES, synthesize_corpus


def cache_root() -> Path:
    """Where embedded corpora are cached (``$NESTBENCH_DATA`` or the user cache folder)."""
    env = os.environ.get("NESTBENCH_DATA")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "nestbench" / "corpus"


def corpus_dir(size: str = "default", seed: int = 0, root: str | Path | None = None) -> Path:
    """The cache folder of one corpus (whether or not it exists yet)."""
    return Path(root or cache_root()) / f"{size}-seed{seed}-v{GENERATOR_VERSION}"


def is_complete(path: Path, size: str, seed: int) -> bool:
    """Whether ``path`` holds a finished corpus of this size, seed and generator version."""
    try:
        stats = json.loads((path / "corpus.json").read_text())
    except (OSError, ValueError):
        return False
    return (stats.get("size"), stats.get("seed"), stats.get("generator_version")) == (
        size,
        seed,
        GENERATOR_VERSION,
    )


@contextlib.contextmanager
def _locked(lock_path: Path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no cross-process lock
            yield
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ensure_embedded_corpus(
    size: str = "default",
    seed: int = 0,
    root: str | Path | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """The folder of the embedded corpus, generating it first if it is not cached.

    Args:
        size: ``tiny``, ``small`` or ``default``.
        seed: generation seed.
        root: cache root (default :func:`cache_root`).
        workers: synthesis processes (default: CPU count).
        progress: progress bar while generating.

    Returns:
        The corpus folder (holding ``asr/``, ``sv/``, ``diar/``, ``slu/`` and ``README.md``).
    """
    if size not in SIZES:
        raise ValueError(f"unknown size {size!r}, expected one of {', '.join(SIZES)}")
    final = corpus_dir(size, seed, root)
    if is_complete(final, size, seed):
        return final
    with _locked(final.with_name(final.name + ".lock")):
        if is_complete(final, size, seed):
            return final
        build_then_replace(
            final,
            lambda partial: synthesize_corpus(
                partial, size=size, seed=seed, workers=workers, progress=progress
            ),
        )
    return final


def build_then_replace(final: Path, make) -> None:
    """``make(partial)`` into a fresh folder beside ``final``, then ``final`` replaced by it in
    one rename: a reader sees the old folder or the whole new one, never half of it (the partial
    folder is removed when ``make`` fails)."""
    partial = final.with_name(f"{final.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        make(partial)
        if final.exists():
            shutil.rmtree(final)
        os.replace(partial, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
