"""RTTM diarization references and UEM scoring regions.

RTTM (NIST Rich Transcription Time Marked), one segment a line, ten space-separated fields::

    SPEAKER <file> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>

Only ``SPEAKER`` lines are segments; the other NIST line types (``SPKR-INFO``, ``LEXEME``, ...)
and ``;;`` comments are skipped. UEM, one scored region a line::

    <file> <channel> <onset> <offset>
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .manifest import ManifestError, atomic_write_text, read_parsed_lines

RTTM_FORMAT = "SPEAKER <file> <channel> <onset> <duration> <NA> <NA> <speaker> <NA> <NA>"
UEM_FORMAT = "<file> <channel> <onset> <offset>"
_OTHER_RTTM_TYPES = {
    "SEGMENT", "NOSCORE", "NO_RT_METADATA", "LEXEME", "NON-LEX", "NON-SPEECH", "FILLER", "EDIT",
    "IP", "SU", "CB", "A/P", "SPKR-INFO",
}  # fmt: skip


@dataclass(frozen=True)
class Segment:
    """One speaker turn: ``speaker`` talks in ``file_id`` from ``onset`` for ``duration`` s."""

    file_id: str
    onset: float
    duration: float
    speaker: str
    channel: str = "1"

    @property
    def end(self) -> float:
        return self.onset + self.duration


@dataclass(frozen=True)
class UEMRegion:
    """A scored region of ``file_id``, ``onset`` to ``offset`` seconds."""

    file_id: str
    onset: float
    offset: float
    channel: str = "1"


def _seconds(token: str, path, lineno: int, name: str, fmt: str) -> float:
    try:
        v = float(token)
    except ValueError:
        raise ManifestError(
            path, lineno, f"{name} is {token!r}, expected seconds (a number); format: {fmt}"
        ) from None
    if not math.isfinite(v) or v < 0:
        raise ManifestError(path, lineno, f"{name} is {token!r}, expected seconds >= 0")
    return v


def parse_rttm_line(line: str, path: str | Path = "<rttm>", lineno: int = 1) -> Segment | None:
    """A segment from one RTTM line; None for blank, comment and non-``SPEAKER`` lines."""
    fields = line.split()
    if not fields or fields[0].startswith(";;"):
        return None
    if fields[0] != "SPEAKER":
        if fields[0] in _OTHER_RTTM_TYPES:
            return None
        raise ManifestError(
            path, lineno, f"line type {fields[0]!r}, expected an RTTM line: {RTTM_FORMAT}"
        )
    if not 8 <= len(fields) <= 10:
        raise ManifestError(
            path, lineno, f"{len(fields)} fields, expected 10 (at least 8): {RTTM_FORMAT}"
        )
    onset = _seconds(fields[3], path, lineno, "onset", RTTM_FORMAT)
    duration = _seconds(fields[4], path, lineno, "duration", RTTM_FORMAT)
    return Segment(
        file_id=fields[1], onset=onset, duration=duration, speaker=fields[7], channel=fields[2]
    )


def read_rttm(path: str | Path) -> list[Segment]:
    """All ``SPEAKER`` segments of an RTTM file, in file order.

    Raises:
        ManifestError: a malformed line (file, line number and the expected format).
    """
    return read_parsed_lines(path, parse_rttm_line)


def format_rttm_line(seg: Segment) -> str:
    """One RTTM line (no newline), times with 3 decimals."""
    return (
        f"SPEAKER {seg.file_id} {seg.channel} {seg.onset:.3f} {seg.duration:.3f} "
        f"<NA> <NA> {seg.speaker} <NA> <NA>"
    )


def write_rttm(path: str | Path, segments: Iterable[Segment]) -> None:
    """Write segments as RTTM, sorted by file and onset, atomically."""
    segs = sorted(segments, key=lambda s: (s.file_id, s.onset, s.speaker))
    atomic_write_text(path, "".join(format_rttm_line(s) + "\n" for s in segs))


def read_uem(path: str | Path) -> list[UEMRegion]:
    """All regions of a UEM file, in file order.

    Raises:
        ManifestError: a malformed line (file, line number and the expected format).
    """
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if not fields or fields[0].startswith(";;"):
                continue
            if len(fields) != 4:
                raise ManifestError(path, lineno, f"{len(fields)} fields, expected 4: {UEM_FORMAT}")
            onset = _seconds(fields[2], path, lineno, "onset", UEM_FORMAT)
            offset = _seconds(fields[3], path, lineno, "offset", UEM_FORMAT)
            if offset < onset:
                raise ManifestError(
                    path,
                    lineno,
                    f"offset {offset} is before onset {onset}, expected onset <= "
                    f"offset: {UEM_FORMAT}",
                )
            out.append(UEMRegion(fields[0], onset, offset, fields[1]))
    return out


def write_uem(path: str | Path, regions: Iterable[UEMRegion]) -> None:
    """Write regions as UEM, atomically."""
    atomic_write_text(
        path,
        "".join(f"{r.file_id} {r.channel} {r.onset:.3f} {r.offset:.3f}\n" for r in regions),
    )


def speech_and_overlap(segments: Iterable[Segment]) -> tuple[float, float]:
    """(speech time, overlapped time) in seconds: time where at least one, and at least two,
    speakers talk (each speaker's own segments merged first)."""
    events: list[tuple[float, int]] = []
    by_speaker: dict[str, list[tuple[float, float]]] = {}
    for s in segments:
        by_speaker.setdefault(s.speaker, []).append((s.onset, s.end))
    for spans in by_speaker.values():
        spans.sort()
        merged = [list(spans[0])]
        for a, b in spans[1:]:
            if a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        for a, b in merged:
            events += [(a, 1), (b, -1)]
    events.sort(key=lambda e: (e[0], e[1]))
    speech = overlap = 0.0
    active = 0
    prev = None
    for t, d in events:
        if prev is not None:
            if active >= 1:
                speech += t - prev
            if active >= 2:
                overlap += t - prev
        active += d
        prev = t
    return speech, overlap


def overlap_ratio(segments: Iterable[Segment]) -> float:
    """Overlapped time / speech time (0 when there is no speech)."""
    speech, overlap = speech_and_overlap(segments)
    return overlap / speech if speech > 0 else 0.0
