"""LibriSpeech (Panayotov et al., 2015): ``<split>/<speaker>/<chapter>/`` folders holding
``<speaker>-<chapter>-<utterance>.flac`` files and one ``<speaker>-<chapter>.trans.txt`` with a
line ``<speaker>-<chapter>-<utterance> TRANSCRIPT`` per utterance."""

from __future__ import annotations

import re
from pathlib import Path

from ..manifest import ManifestError, write_manifest
from .common import ImportError_, audio_duration, find_audio, require_dir

_UTT = re.compile(r"^(\d+)-(\d+)-(\d+)$")
TRANS_FORMAT = "<speaker>-<chapter>-<utterance> TRANSCRIPT"


def _is_split(folder: Path) -> bool:
    return any(folder.glob("*/*/*.trans.txt"))


def find_splits(src: Path) -> dict[str, Path]:
    """Split name -> folder: ``src`` itself when it is one split, else its sub-folders (also
    under ``src/LibriSpeech``) that are."""
    if _is_split(src):
        return {src.name: src}
    roots = [src] + ([src / "LibriSpeech"] if (src / "LibriSpeech").is_dir() else [])
    out = {}
    for root in roots:
        for d in sorted(p for p in root.iterdir() if p.is_dir()):
            if _is_split(d):
                out[d.name] = d
    return out


def read_split(folder: Path) -> list[dict]:
    """Records (absolute ``audio_filepath``, ``duration``, lower-case ``text``, ``speaker``) of
    one split, in sorted order.

    Raises:
        ManifestError: a malformed transcript line, or one whose audio file is missing.
    """
    records = []
    for trans in sorted(folder.glob("*/*/*.trans.txt")):
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = line.strip().split(maxsplit=1)
                m = _UTT.match(parts[0])
                if len(parts) != 2 or not m:
                    raise ManifestError(
                        trans, lineno, f"{line.strip()[:60]!r}, expected {TRANS_FORMAT}"
                    )
                if (m.group(1), m.group(2)) != (speaker, chapter):
                    raise ManifestError(
                        trans,
                        lineno,
                        f"utterance {parts[0]} is not in "
                        f"speaker {speaker}, chapter {chapter} (its folder)",
                    )
                audio = find_audio(trans.parent, parts[0])
                if audio is None:
                    raise ManifestError(
                        trans,
                        lineno,
                        f"no audio {parts[0]}.flac (or .wav) "
                        f"beside the transcript in {trans.parent}",
                    )
                records.append(
                    {
                        "audio_filepath": str(audio.resolve()),
                        "duration": audio_duration(audio),
                        "text": parts[1].lower(),
                        "speaker": speaker,
                    }
                )
    return records


def prepare_librispeech(src: str | Path, out: str | Path) -> dict[str, Path]:
    """Write ``<split>_manifest.json`` into ``out`` for every LibriSpeech split under ``src``
    (a split folder such as ``dev-clean``, or a folder holding several).

    Returns:
        Split name -> manifest path.

    Raises:
        ImportError_: no split found; ManifestError: a malformed transcript.
    """
    src = require_dir(src, "LibriSpeech: <split>/<speaker>/<chapter>/*.trans.txt")
    splits = find_splits(src)
    if not splits:
        raise ImportError_(
            f"{src}: no LibriSpeech split found (expected "
            "<split>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt)"
        )
    out = Path(out)
    written = {}
    for name, folder in splits.items():
        written[name] = write_manifest(out / f"{name}_manifest.json", read_split(folder))
    return written
