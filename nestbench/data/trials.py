"""Speaker-verification trial lists in VoxCeleb format.

One trial a line, ``<label> <enroll> <test>``, label 1 for the same speaker and 0 otherwise; the
two names are audio paths relative to the corpus's ``wav/`` folder, e.g.
``1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from .manifest import ManifestError, atomic_write_text, read_parsed_lines

TRIAL_FORMAT = "<label 0|1> <enroll path> <test path>"


@dataclass(frozen=True)
class Trial:
    """``label`` 1 when ``enroll`` and ``test`` are the same speaker, else 0."""

    label: int
    enroll: str
    test: str


def parse_trial_line(line: str, path: str | Path = "<trials>", lineno: int = 1) -> Trial | None:
    """A trial from one line; None for a blank line."""
    fields = line.split()
    if not fields:
        return None
    if len(fields) != 3:
        raise ManifestError(path, lineno, f"{len(fields)} fields, expected 3: {TRIAL_FORMAT}")
    if fields[0] not in ("0", "1"):
        raise ManifestError(
            path,
            lineno,
            f"label {fields[0]!r}, expected 1 (target) or 0 (non-target): {TRIAL_FORMAT}",
        )
    return Trial(int(fields[0]), fields[1], fields[2])


def read_trials(path: str | Path) -> list[Trial]:
    """All trials of a VoxCeleb-format list, in file order.

    Raises:
        ManifestError: a malformed line (file, line number and the expected format).
    """
    return read_parsed_lines(path, parse_trial_line)


def write_trials(path: str | Path, trials: Iterable[Trial]) -> None:
    """Write trials in VoxCeleb format, atomically."""
    atomic_write_text(path, "".join(f"{t.label} {t.enroll} {t.test}\n" for t in trials))


def looks_like_trials(path: str | Path, lines: int = 5) -> bool:
    """Whether the first non-blank lines of a text file parse as trials."""
    try:
        with open(path, encoding="utf-8") as f:
            seen = 0
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parse_trial_line(line, path, i)
                seen += 1
                if seen >= lines:
                    break
            return seen > 0
    except (ManifestError, UnicodeDecodeError, OSError):
        return False


def trial_names(trials: Iterable[Trial]) -> list[str]:
    """Every audio name the trials use, each once, in order of first use."""
    seen: dict[str, None] = {}
    for t in trials:
        seen.setdefault(t.enroll)
        seen.setdefault(t.test)
    return list(seen)


class TrialResolver:
    """Maps trial names to audio paths by their trailing path components: the name
    ``id10270/x6uYqmx31kE/00001.wav`` matches ``/any/root/wav/id10270/x6uYqmx31kE/00001.wav``.

    Args:
        paths: audio paths (e.g. the ``audio_filepath`` of a manifest's records).
    """

    def __init__(self, paths: Iterable[str]) -> None:
        self._paths = [PurePosixPath(Path(p).as_posix()) for p in paths]
        self._by_depth: dict[int, dict[str, list[str]]] = {}

    def _index(self, depth: int) -> dict[str, list[str]]:
        if depth not in self._by_depth:
            idx: dict[str, list[str]] = {}
            for p in self._paths:
                if len(p.parts) >= depth:
                    idx.setdefault("/".join(p.parts[-depth:]), []).append(str(p))
            self._by_depth[depth] = idx
        return self._by_depth[depth]

    def resolve(self, name: str) -> list[str]:
        """All paths whose trailing components equal ``name`` (empty: unknown)."""
        parts = PurePosixPath(name.replace("\\", "/")).parts
        return self._index(len(parts)).get("/".join(parts), [])


def balanced_trials(
    utts_by_speaker: dict[str, list[str]], n_trials: int, rng: np.random.Generator
) -> list[Trial]:
    """A balanced trial list: as many target as non-target trials (``n_trials // 2`` each, or
    fewer when the speakers lack same-speaker pairs), no pair twice, in random order."""
    speakers = sorted(utts_by_speaker)
    targets = [
        (a, b)
        for s in speakers
        for i, a in enumerate(utts_by_speaker[s])
        for b in utts_by_speaker[s][i + 1 :]
    ]
    n_half = min(n_trials // 2, len(targets))
    chosen = [targets[i] for i in sorted(rng.choice(len(targets), size=n_half, replace=False))]
    trials = [Trial(1, *p) if rng.random() < 0.5 else Trial(1, p[1], p[0]) for p in chosen]
    nontargets: set[tuple[str, str]] = set()
    total_pairs = sum(
        len(utts_by_speaker[a]) * len(utts_by_speaker[b])
        for i, a in enumerate(speakers)
        for b in speakers[i + 1 :]
    )
    if total_pairs < n_half:
        raise ValueError(f"only {total_pairs} non-target pairs for {n_half} non-target trials")
    while len(nontargets) < n_half:
        s1, s2 = rng.choice(len(speakers), size=2, replace=False)
        u1 = utts_by_speaker[speakers[s1]]
        u2 = utts_by_speaker[speakers[s2]]
        a, b = u1[int(rng.integers(len(u1)))], u2[int(rng.integers(len(u2)))]
        if (a, b) not in nontargets and (b, a) not in nontargets:
            nontargets.add((a, b))
    trials += [Trial(0, a, b) for a, b in sorted(nontargets)]
    order = rng.permutation(len(trials))
    return [trials[i] for i in order]
