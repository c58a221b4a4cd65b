"""VoxCeleb 1/2 (Nagrani et al.): ``wav/<speaker id>/<video id>/<nnnnn>.wav`` plus VoxCeleb trial
lists (``veri_test2.txt``: ``<label> <enroll> <test>`` with names relative to ``wav/``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..layout import Writer
from ..manifest import ManifestError
from ..trials import (
    TRIAL_FORMAT,
    Trial,
    balanced_trials,
    looks_like_trials,
    parse_trial_line,
    trial_names,
)
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
    """Text files within two levels of ``src`` whose lines parse as VoxCeleb trials, the
    VoxCeleb1-O list (``veri_test*``) first."""
    files = sorted(
        set(src.glob("*.txt")) | set(src.glob("*/*.txt")),
        key=lambda f: (not f.name.startswith("veri_test"), str(f)),
    )
    return [f for f in files if looks_like_trials(f)]


def _stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", path.stem).strip("_") or "trials"


def hold_out_speakers(
    by_speaker: dict[str, list[str]], count: int | None, rng: np.random.Generator
) -> list[str]:
    """The training speakers held out for the dev split: ``count`` of them (default 5%, at least
    2), drawn among those with two or more utterances (so the dev split has target trials),
    leaving at least 2 training speakers.

    Raises:
        ImportError_: too few speakers for a dev split and a training split.
    """
    eligible = sorted(s for s, utts in by_speaker.items() if len(utts) >= 2)
    n = count if count is not None else max(2, round(0.05 * len(by_speaker)))
    if n < 2 or len(eligible) < n or len(by_speaker) - n < 2:
        raise ImportError_(
            f"{len(by_speaker)} training speaker(s) ({len(eligible)} with two or more "
            f"utterances): cannot hold out {n} for the dev split and keep 2 for training "
            "(a dev split needs 2 speakers with 2+ utterances; set --dev-speakers)"
        )
    return sorted(eligible[i] for i in rng.choice(len(eligible), size=n, replace=False))


def prepare_voxceleb(
    src: str | Path,
    out: str | Path,
    trials: list[str | Path] | None = None,
    dev_speakers: int | None = None,
    dev_trials: int = 2000,
    seed: int = 0,
    force: bool = False,
) -> dict[str, Path]:
    """Import VoxCeleb audio and trial lists into ``out/sv/`` (:mod:`nestbench.data.layout`).

    Writes, with names relative to ``wav/`` as in VoxCeleb's lists:

    - ``train_manifest.json``: utterances of the speakers that neither a trial list nor the dev
      split uses (``label`` = speaker id);
    - ``dev_manifest.json`` + ``dev_trials.txt``: ``dev_speakers`` training speakers held out
      (see :func:`hold_out_speakers`) and a balanced list of up to ``dev_trials`` trials among
      them, drawn with ``seed``;
    - ``test_manifest.json`` + ``test_trials.txt`` for the first trial list, and
      ``<list name>_manifest.json`` + ``_trials.txt`` for each further one (an extra eval split,
      named in ``splits.json``); a manifest holds the utterances its list names.

    Args:
        src: the corpus (a ``wav`` folder, or a folder with ``wav``/``*/wav`` folders).
        trials: trial lists; default: the ones found in ``src`` (see :func:`find_trial_lists`).
        force: replace existing split files in ``out/sv`` (else an error names the first).

    Returns:
        Name -> written path (``train``, ``dev``, ``test``, ``<split>_trials``, ``splits``).

    Raises:
        ImportError_: no audio or too few speakers; ManifestError: a malformed trial line or one
        naming unknown audio; LayoutError: an output exists and ``force`` is off.
    """
    src = require_dir(src, "VoxCeleb: wav/id*/<video>/*.wav")
    roots = wav_roots(src)
    if not roots:
        raise ImportError_(
            f"{src}: no VoxCeleb audio found (expected [.../]wav/id*/<video>/<nnnnn>.wav)"
        )
    lists = [Path(t) for t in trials] if trials is not None else find_trial_lists(src)
    if not lists:
        raise ImportError_(
            f"{src}: no trial list found (expected a text file of '{TRIAL_FORMAT}' lines, "
            "such as veri_test2.txt, in SRC or one folder below; or pass --trials)"
        )
    names = ["test"] + [_stem(p) for p in lists[1:]]
    clash = [n for n in names[1:] if n in ("train", "dev") or names.count(n) > 1]
    if clash:
        raise ImportError_(f"trial lists give the split name {clash[0]!r} twice or reserved")
    writer = Writer(out, "sv", force)
    writer.check_free(["train", "dev", *names], ["dev", *names])
    by_name: dict[str, dict] = {}
    for root in roots:
        for f in sorted(root.glob("id*/*/*")):
            if f.suffix not in AUDIO_EXTENSIONS:
                continue
            by_name.setdefault(
                f.relative_to(root).as_posix(),
                {
                    "audio_filepath": str(f.resolve()),
                    "duration": audio_duration(f),
                    "label": f.parent.parent.name,
                },
            )
    parsed_lists: dict[str, list[Trial]] = {}
    for name, path in zip(names, lists, strict=True):
        parsed_lists[name] = _read_list(path, by_name, roots)
    trial_speakers = {
        by_name[n]["label"] for trials_ in parsed_lists.values() for n in trial_names(trials_)
    }
    by_speaker: dict[str, list[str]] = {}
    for n, rec in by_name.items():
        if rec["label"] not in trial_speakers:
            by_speaker.setdefault(rec["label"], []).append(n)
    rng = np.random.default_rng(seed)
    held = hold_out_speakers(by_speaker, dev_speakers, rng)
    try:
        parsed_lists["dev"] = balanced_trials({s: by_speaker[s] for s in held}, dev_trials, rng)
    except ValueError as e:
        raise ImportError_(f"dev split of {len(held)} speakers: {e}") from None
    for name, trials_ in parsed_lists.items():
        writer.manifest(name, [by_name[n] for n in trial_names(trials_)])
        writer.trials(name, trials_)
    train = [r for r in by_name.values() if r["label"] in by_speaker and r["label"] not in held]
    writer.manifest("train", train)
    writer.splits("dev", names)
    return writer.written


def _read_list(path: Path, by_name: dict[str, dict], roots: list[Path]) -> list[Trial]:
    """The trials of one list, each name checked against the corpus."""
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
                        f"names {n}, which is not in the corpus (expected a path relative to "
                        f"{', '.join(str(r) for r in roots)})",
                    )
            parsed.append(t)
    if not parsed:
        raise ImportError_(f"{path}: no trials (expected lines '{TRIAL_FORMAT}')")
    return parsed
