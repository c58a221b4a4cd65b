"""Helpers shared by the importers."""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from nestbench.errors import UserError

#: Audio extensions the importers pick up (what soundfile reads).
AUDIO_EXTENSIONS = (".wav", ".flac")


class ImportError_(UserError):
    """A corpus that cannot be imported (missing parts, inconsistent files)."""


def audio_duration(path: str | Path) -> float:
    """Duration of an audio file in seconds, from its header.

    Raises:
        ImportError_: the file cannot be read.
    """
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as e:
        raise ImportError_(f"{path}: cannot read audio ({e})") from e
    return round(info.frames / info.samplerate, 6)


def find_audio(folder: Path, stem: str) -> Path | None:
    """``folder/stem`` with one of :data:`AUDIO_EXTENSIONS`, if it exists."""
    for ext in AUDIO_EXTENSIONS:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def require_dir(path: str | Path, what: str) -> Path:
    """``path`` as a Path, or ImportError_ if it is not a folder."""
    p = Path(path)
    if not p.is_dir():
        raise ImportError_(f"{p}: not a folder (expected {what})")
    return p
