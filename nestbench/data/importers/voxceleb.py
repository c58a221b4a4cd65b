"""VoxCeleb 1/2 (Nagrani et al.): ``wav/<speaker id>/<video id>/<nnnnn>.wav`` plus VoxCeleb trial
lists (``veri_test2.txt``: ``<label> <enroll> <test>`` with names relative to ``wav/``)."""

from __future__ import annotations

import re
from pathlib import Path

from ..manifest import ManifestError, write_manifest
from ..trials import Trial, looks_like_trials, parse_trial_line, write_trials
from .common import AUDIO_EXTENSIONS, ImportError_, audio_duration, require_dir


def wav_roots(src: Path) -> list[Path]:
    """Folders holding ``id*/<video>/<file>`` audio: every folder named ``wav`` within three
    levels of ``src`` that does, else ``src`` itself."""
    roots = [src / "wav"] + sorted(src.glob("*/wav")) + sorted(src.glob("*/*/wav"))
    roots = [r for r in roots if r.is_dir() and _has_audio(r)]
    return roots or ([src] if _has_audio(src) else [])


def _has_audio(root: Path) -> bool:
    return any(p.suffix in AUDIO_EXTENSIONS for p in root.glob("id*/*/*"))


def find_trial_lists(src: Path) -> list[Path]:
    """Text files within two levels of ``src`` whose lines parse as VoxCeleb trials."""
    files = sorted(set(src.glob("*.txt")) | set(src.glob("*/*.txt")))
    return [f for f in files if looks_like_trials(f)]


def _stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_") or "trials"


def prepare_voxceleb(
    src: str | Path, out: str | Path, trials: list[str | Path] | None = None
) -> dict[str, Path]:
    """Import VoxCeleb audio and trial lists.

    Writes ``train_manifest.json`` (utterances of speakers that no trial list uses), and per
    trial list a manifest of the utterances it names plus the list itself:
    ``test_manifest.json`` and ``test_trials.txt`` for a single list, ``<list name>_...``
    for several.

    Args:
        src: the corpus (a ``wav`` folder, or a folder with ``wav``/``*/wav`` folders).
        out: output folder.
        trials: trial lists; default: the ones found in ``src`` (see :func:`find_trial_lists`).

    Returns:
        Name -> written path (``train``, ``<list>``, ``<list>_trials``).

    Raises:
        ImportError_: no audio; ManifestError: a malformed trial line or one naming unknown audio.
    """
    src = require_dir(src, "VoxCeleb: wav/id*/<video>/*.wav")
    roots = wav_roots(src)
    if not roots:
        raise ImportError_(
            f"{src}: no VoxCeleb audio found (expected [.../]wav/id*/<video>/<nnnnn>.wav)"
        )
    by_name: dict[str, dict] = {}
    for root in roots:
        for f in sorted(root.glob("id*/*/*")):
            if f.suffix not in AUDIO_EXTENSIONS:
                continue
            name = f.relative_to(root).as_posix()
            by_name.setdefault(
                name,
                {
                    "audio_filepath": str(f.resolve()),
                    "duration": audio_duration(f),
                    "label": f.parent.parent.name,
                },
            )
    lists = [Path(t) for t in trials] if trials is not None else find_trial_lists(src)
    out = Path(out)
    written: dict[str, Path] = {}
    trial_speakers: set[str] = set()
    for path in lists:
        name = "test" if len(lists) == 1 else _stem(path)
        parsed: list[Trial] = []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                t = parse_trial_line(line, path, lineno)
                if t is None:
                    continue
                for n in (t.enroll, t.test):
                    if n not in by_name:
                        raise ManifestError(
                            path,
                            lineno,
                            f"names {n}, which is not in the "
                            f"corpus (expected a path relative to "
                            f"{', '.join(str(r) for r in roots)})",
                        )
                parsed.append(t)
        used = list(dict.fromkeys(n for t in parsed for n in (t.enroll, t.test)))
        trial_speakers |= {by_name[n]["label"] for n in used}
        written[name] = write_manifest(out / f"{name}_manifest.json", [by_name[n] for n in used])
        write_trials(out / f"{name}_trials.txt", parsed)
        written[f"{name}_trials"] = out / f"{name}_trials.txt"
    train = [r for r in by_name.values() if r["label"] not in trial_speakers]
    written["train"] = write_manifest(out / "train_manifest.json", train)
    return written
