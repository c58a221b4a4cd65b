"""``nestbench data check``: find what is wrong with a manifest or a corpus folder.

Checks, each reported with the file and line it concerns:

- manifests: malformed lines; missing or unreadable audio (read with
  :func:`nestbench.audio.load_audio`); sample rates other than 16 kHz and channels other than
  one; durations that disagree with the audio (whole files: ``|duration - audio| > tolerance``;
  segments with ``offset``: ``offset + duration > audio + tolerance``); the same audio segment
  twice in a manifest (an error) or in two manifests of the folder (a warning); ``num_speakers``
  that disagrees with the RTTM;
- RTTM and UEM files named by manifests: missing, malformed, no segments for the recording,
  segments or regions past the end of the audio;
- trial lists (``*.txt`` files in VoxCeleb format): malformed lines and names that match no
  audio of the folder's manifests (nor a file under ``wav/``);
- SLURP jsonl files: malformed records; entities that disagree with ``sentence_annotation``
  (a warning).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf

from .manifest import ManifestError, parse_manifest_line
from .rttm import read_rttm, read_uem
from .slurp import annotation_problems, validate_record
from .trials import TrialResolver, looks_like_trials, parse_trial_line

EXPECTED_SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Problem:
    """One finding. ``severity`` is ``"error"`` or ``"warning"``."""

    path: str
    line: int | None
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line is not None else self.path
        return f"{self.severity.upper()} {where}: {self.message}"


@dataclass
class Report:
    """What :func:`check_path` looked at and found."""

    problems: list[Problem] = field(default_factory=list)
    manifests: int = 0
    records: int = 0
    audio_files: int = 0
    trial_lists: int = 0
    trials: int = 0
    slurp_files: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def summary(self) -> str:
        return (
            f"checked {self.manifests} manifest(s) with {self.records} record(s) and "
            f"{self.audio_files} audio file(s), {self.trial_lists} trial list(s) with "
            f"{self.trials} trial(s), {self.slurp_files} SLURP file(s): "
            f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        )


def _first_line(path: Path) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    return line
    except (OSError, UnicodeDecodeError):
        return None
    return None


def classify(path: Path) -> str | None:
    """``"manifest"``, ``"slurp"``, ``"trials"`` or None: from a file's first line, and for trial
    lists also from the name (``*trial*.txt``, ``veri_*.txt``), so that a list whose first lines
    are malformed is still checked."""
    if path.suffix in (".json", ".jsonl"):
        line = _first_line(path)
        if line is None:
            return None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            return None
        if isinstance(obj, dict) and "audio_filepath" in obj:
            return "manifest"
        if isinstance(obj, dict) and "slurp_id" in obj:
            return "slurp"
        return None
    if path.suffix == ".txt" and (
        any(k in path.name.lower() for k in ("trial", "veri_")) or looks_like_trials(path, 1)
    ):
        return "trials"
    return None


class _AudioInfo:
    """Per audio file: header facts and the result of one full read, computed once."""

    def __init__(self, read_audio: bool) -> None:
        self.read_audio = read_audio
        self._info: dict[str, tuple] = {}

    def __len__(self) -> int:
        return len(self._info)

    def get(self, path: str) -> tuple[float | None, int | None, int | None, str | None]:
        """(duration s, sample rate, channels, error message)."""
        if path not in self._info:
            self._info[path] = self._probe(path)
        return self._info[path]

    def _probe(self, path: str):
        p = Path(path)
        if not p.exists():
            return None, None, None, f"missing audio file {path}"
        try:
            info = sf.info(path)
        except (RuntimeError, sf.LibsndfileError) as e:
            return None, None, None, f"unreadable audio file {path} ({e})"
        if self.read_audio:
            from nestbench.audio import AudioError, load_audio

            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    load_audio(path, sample_rate=info.samplerate)
            except AudioError as e:
                return None, info.samplerate, info.channels, f"unreadable audio: {e}"
        return info.frames / info.samplerate, info.samplerate, info.channels, None


def _check_annotations(
    rec: dict, audio_dur: float, where: tuple[str, int], report: Report, tolerance: float
) -> None:
    path, lineno = where
    stem = Path(rec["audio_filepath"]).stem
    start = float(rec.get("offset") or 0.0)
    end = min(audio_dur, start + float(rec["duration"])) if "offset" in rec else audio_dur
    rttm = rec.get("rttm_filepath")
    if rttm:
        if not Path(rttm).is_file():
            report.problems.append(Problem(path, lineno, f"missing RTTM file {rttm}"))
        else:
            try:
                segs = read_rttm(rttm)
            except ManifestError as e:
                report.problems.append(Problem(e.path, e.line, e.message))
                segs = None
            if segs is not None:
                ids = {s.file_id for s in segs}
                mine = [s for s in segs if s.file_id == stem] if len(ids) > 1 else segs
                if not mine:
                    report.problems.append(
                        Problem(path, lineno, f"RTTM {rttm} has no segments for recording {stem}")
                    )
                for s in mine:
                    if s.end > end + tolerance:
                        report.problems.append(
                            Problem(
                                rttm,
                                None,
                                f"segment of {s.speaker} at {s.onset:.3f}+"
                                f"{s.duration:.3f} s ends at {s.end:.3f} s, past the end of the audio "
                                f"({end:.3f} s, {rec['audio_filepath']})",
                            )
                        )
                n = rec.get("num_speakers")
                if mine and isinstance(n, int) and n != len({s.speaker for s in mine}):
                    report.problems.append(
                        Problem(
                            path,
                            lineno,
                            f"num_speakers is {n} but the RTTM has "
                            f"{len({s.speaker for s in mine})} speakers",
                        )
                    )
    uem = rec.get("uem_filepath")
    if uem:
        if not Path(uem).is_file():
            report.problems.append(Problem(path, lineno, f"missing UEM file {uem}"))
        else:
            try:
                regions = read_uem(uem)
            except ManifestError as e:
                report.problems.append(Problem(e.path, e.line, e.message))
                regions = []
            for r in regions:
                if (len({x.file_id for x in regions}) == 1 or r.file_id == stem) and (
                    r.offset > end + tolerance
                ):
                    report.problems.append(
                        Problem(
                            uem,
                            None,
                            f"region {r.onset:.3f}-{r.offset:.3f} s ends past the end of "
                            f"the audio ({end:.3f} s)",
                        )
                    )


def check_manifest(
    path: str | Path,
    report: Report | None = None,
    tolerance: float = 0.02,
    read_audio: bool = True,
    audio: _AudioInfo | None = None,
    seen: dict | None = None,
) -> Report:
    """Check one manifest (see the module docstring); findings are added to ``report``."""
    report = report if report is not None else Report()
    audio = audio if audio is not None else _AudioInfo(read_audio)
    seen = seen if seen is not None else {}
    path = Path(path)
    base = path.resolve().parent
    report.manifests += 1
    keys: dict[tuple, tuple[int, object]] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                rec = parse_manifest_line(line, path, lineno, base)
            except ManifestError as e:
                report.problems.append(Problem(str(path), lineno, e.message))
                continue
            if rec is None:
                continue
            report.records += 1
            apath = rec["audio_filepath"]
            offset = rec.get("offset")
            key = (
                apath,
                float(offset or 0.0),
                round(float(rec["duration"]), 3) if offset is not None else None,
            )
            if key in keys:
                first, label = keys[key]
                also = (
                    f", labelled {label!r} there and {rec.get('label')!r} here"
                    if rec.get("label") != label
                    else ""
                )
                report.problems.append(
                    Problem(str(path), lineno, f"duplicate of line {first} ({apath}{also})")
                )
            else:
                keys[key] = (lineno, rec.get("label"))
            other = seen.get(key)
            if other is not None and other[0] != str(path):
                report.problems.append(
                    Problem(
                        str(path), lineno, f"{apath} is also in {other[0]}:{other[1]}", "warning"
                    )
                )
            seen.setdefault(key, (str(path), lineno))
            dur, sr, channels, err = audio.get(apath)
            if err is not None:
                report.problems.append(Problem(str(path), lineno, err))
                continue
            if sr != EXPECTED_SAMPLE_RATE:
                report.problems.append(
                    Problem(
                        str(path),
                        lineno,
                        f"sample rate {sr} Hz, expected {EXPECTED_SAMPLE_RATE} ({apath})",
                    )
                )
            if channels != 1:
                report.problems.append(
                    Problem(str(path), lineno, f"{channels} channels, expected mono ({apath})")
                )
            if offset is None:
                if abs(rec["duration"] - dur) > tolerance:
                    report.problems.append(
                        Problem(
                            str(path),
                            lineno,
                            f"duration {rec['duration']:.3f} s, but the audio has "
                            f"{dur:.3f} s ({apath})",
                        )
                    )
            elif offset + rec["duration"] > dur + tolerance:
                report.problems.append(
                    Problem(
                        str(path),
                        lineno,
                        f"segment {offset:.3f}+{rec['duration']:.3f} s ends past "
                        f"the end of the audio ({dur:.3f} s, {apath})",
                    )
                )
            _check_annotations(rec, dur, (str(path), lineno), report, tolerance)
    report.audio_files = len(audio)
    return report


def check_trials(
    path: str | Path, resolver: TrialResolver, roots: Iterable[Path], report: Report
) -> Report:
    """Check a VoxCeleb trial list: every line well formed, every name known to ``resolver``
    or a file under one of ``roots``."""
    path = Path(path)
    roots = list(roots)
    report.trial_lists += 1
    labels: set[int] = set()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            try:
                t = parse_trial_line(line, path, lineno)
            except ManifestError as e:
                report.problems.append(Problem(str(path), lineno, e.message))
                continue
            if t is None:
                continue
            report.trials += 1
            labels.add(t.label)
            for name in (t.enroll, t.test):
                if resolver.resolve(name) or any((r / name).is_file() for r in roots):
                    continue
                report.problems.append(
                    Problem(
                        str(path),
                        lineno,
                        f"names {name}, which no "
                        "manifest of the folder lists and no file under "
                        f"{', '.join(str(r) for r in roots)} is",
                    )
                )
    if not labels:
        report.problems.append(Problem(str(path), None, "no trials (an empty trial list)"))
    elif len(labels) == 1:
        kind = "target (1)" if labels == {1} else "non-target (0)"
        report.problems.append(
            Problem(str(path), None, f"only {kind} trials: an EER needs both target and non-target")
        )
    return report


def check_slurp(path: str | Path, report: Report) -> Report:
    """Check a SLURP jsonl file: records well formed, entities agreeing with the annotation."""
    path = Path(path)
    report.slurp_files += 1
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = validate_record(json.loads(line), path, lineno)
            except json.JSONDecodeError as e:
                report.problems.append(Problem(str(path), lineno, f"not valid JSON ({e.msg})"))
                continue
            except ManifestError as e:
                report.problems.append(Problem(str(path), lineno, e.message))
                continue
            for msg in annotation_problems(rec):
                report.problems.append(Problem(str(path), lineno, msg, "warning"))
    return report


def check_path(path: str | Path, tolerance: float = 0.02, read_audio: bool = True) -> Report:
    """Check a manifest, a trial list, a SLURP jsonl file, or every one of those in a folder
    (recursively).

    Args:
        tolerance: seconds by which durations and segment ends may disagree with the audio.
        read_audio: decode every audio file fully (else only the headers are read).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``path`` is a file of none of the known kinds.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or folder")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    kinds = {f: classify(f) for f in files}
    if path.is_file() and kinds[path] is None:
        raise ValueError(
            f"{path}: not a manifest (JSON lines with audio_filepath), a VoxCeleb "
            "trial list or a SLURP jsonl file"
        )
    report = Report()
    audio = _AudioInfo(read_audio)
    seen: dict = {}
    manifests = [f for f, k in kinds.items() if k == "manifest"]
    for m in manifests:
        check_manifest(m, report, tolerance, read_audio, audio, seen)
    for t in (f for f, k in kinds.items() if k == "trials"):
        folder_manifests = [m for m in _nearby_manifests(t, manifests)]
        paths = []
        for m in folder_manifests:
            with open(m, encoding="utf-8") as fh:
                for i, line in enumerate(fh, 1):
                    try:
                        rec = parse_manifest_line(line, m, i, m.resolve().parent)
                    except ManifestError:
                        continue
                    if rec is not None:
                        paths.append(rec["audio_filepath"])
        check_trials(t, TrialResolver(paths), [t.parent / "wav", t.parent], report)
    for s in (f for f, k in kinds.items() if k == "slurp"):
        check_slurp(s, report)
    return report


def _nearby_manifests(trials: Path, manifests: list[Path]) -> list[Path]:
    """Manifests in the trial list's folder (found by the scan, or there on disk)."""
    found = [m for m in manifests if m.parent == trials.parent]
    if not found:
        found = [p for p in sorted(trials.parent.glob("*.json*")) if classify(p) == "manifest"]
    return found
