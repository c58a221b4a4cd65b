"""LibriSpeech (Panayotov et al., 2015): ``<part>/<speaker>/<chapter>/`` folders holding
``<speaker>-<chapter>-<utterance>.flac`` files and one ``<speaker>-<chapter>.trans.txt`` with a
line ``<speaker>-<chapter>-<utterance> TRANSCRIPT`` per utterance."""

from __future__ import annotations

import re
from pathlib import Path

from ..layout import Writer
from ..manifest import ManifestError
from .common import ImportError_, audio_duration, find_audio, require_dir

_UTT = re.compile(r"^(\d+)-(\d+)-(\d+)$")
TRANS_FORMAT = "<speaker>-<chapter>-<utterance> TRANSCRIPT"


def _is_split(folder: Path) -> bool:
    return any(folder.glob("*/*/*.trans.txt"))


def find_splits(src: Path) -> dict[str, Path]:
    """Part name (``dev-clean``, ...) -> folder: ``src`` itself when it is one part, else its
    sub-folders (also under ``src/LibriSpeech``) that are."""
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


def default_parts(found: list[str]) -> dict[str, list[str]]:
    """LibriSpeech's usual mapping of the parts found to splits: ``train`` = every ``train-*``
    part, ``dev`` = ``dev-clean`` (else ``dev-other``), and one eval split per ``test-*`` part,
    named after it (``test-clean``, ``test-other``)."""
    mapping: dict[str, list[str]] = {"train": [p for p in found if p.startswith("train-")]}
    dev = next((p for p in ("dev-clean", "dev-other") if p in found), None)
    mapping["dev"] = [dev] if dev else []
    for p in found:
        if p.startswith("test-"):
            mapping[p] = [p]
    return mapping


def prepare_librispeech(
    src: str | Path,
    out: str | Path,
    parts: dict[str, list[str]] | None = None,
    force: bool = False,
) -> dict[str, Path]:
    """Import LibriSpeech into ``out/asr/`` (:mod:`nestbench.data.layout`): one manifest per
    split (``audio_filepath``, ``duration``, lower-case ``text``, ``speaker``) and
    ``splits.json`` naming the dev and eval splits.

    Args:
        src: a folder of LibriSpeech parts (``train-clean-100/``, ``dev-clean/``, ...), or of a
            ``LibriSpeech/`` folder holding them.
        parts: split name -> the parts it concatenates; it must name ``train``, ``dev`` and at
            least one eval split (any other name). Default: :func:`default_parts`.
        force: replace existing split files in ``out/asr``.

    Returns:
        Split name -> manifest path (and ``splits``).

    Raises:
        ImportError_: no part found, a part named twice or missing, or a mapping without
        train/dev/eval; ManifestError: a malformed transcript; LayoutError: an output exists.
    """
    src = require_dir(src, "LibriSpeech: <part>/<speaker>/<chapter>/*.trans.txt")
    found = find_splits(src)
    if not found:
        raise ImportError_(
            f"{src}: no LibriSpeech part found (expected "
            "<part>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt)"
        )
    mapping = {k: list(v) for k, v in (parts or default_parts(list(found))).items() if v}
    evals = [k for k in mapping if k not in ("train", "dev")]
    missing = [k for k in ("train", "dev") if k not in mapping] + ([] if evals else ["an eval"])
    if missing:
        raise ImportError_(
            f"{src}: found parts {', '.join(found)}; no part for the "
            f"{' and '.join(missing)} split (map parts with --part SPLIT=PART, e.g. "
            "--part train=train-clean-100 --part dev=dev-clean --part test-clean=test-clean)"
        )
    used = [p for ps in mapping.values() for p in ps]
    for p in used:
        if p not in found:
            raise ImportError_(f"{src}: no LibriSpeech part {p!r} (found {', '.join(found)})")
        if used.count(p) > 1:
            raise ImportError_(f"part {p!r} is mapped to two splits; each part goes to one")
    writer = Writer(out, "asr", force)
    writer.check_free(mapping)
    records = {
        s: [r for name in names for r in read_split(found[name])] for s, names in mapping.items()
    }
    for split, recs in records.items():  # written only once every part has been read
        writer.manifest(split, recs)
    writer.splits("dev", evals)
    return writer.written
