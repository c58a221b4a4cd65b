"""NeMo-style JSON-lines manifests.

One JSON object per line. Fields nestbench knows (others are kept as they are):

=================  ======================================================================
``audio_filepath``  audio file; relative paths are relative to the manifest's folder
``duration``        seconds (of the segment when ``offset`` is given, else of the file)
``offset``          start of the segment in the file, seconds (optional)
``text``            transcript (ASR, SLU) or ``"-"``
``label``           speaker (SV), intent (SLU) or ``"infer"`` (diarization)
``rttm_filepath``   diarization reference (RTTM), relative like ``audio_filepath``
``uem_filepath``    scored regions (UEM), relative like ``audio_filepath``
``num_speakers``    speakers in the recording (diarization)
=================  ======================================================================

:func:`read_manifest` returns the records with the three path fields made absolute;
:func:`write_manifest` writes them back relative to the manifest's folder, atomically.
Malformed lines raise :class:`ManifestError` naming the file, the line and what was expected.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from nestbench.errors import UserError

#: Fields whose values are paths, resolved against the manifest's folder.
PATH_FIELDS = ("audio_filepath", "rttm_filepath", "uem_filepath")
#: Known fields in the order they are written; others follow in their own order.
FIELD_ORDER = (
    "audio_filepath",
    "offset",
    "duration",
    "text",
    "label",
    "num_speakers",
    "rttm_filepath",
    "uem_filepath",
)


class ManifestError(UserError):
    """A malformed line in a manifest or annotation file: ``"<file>:<line>: <what>"``."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temporary file in the same folder, then
    rename it into place, so readers never see a partial file. The file gets the permissions a
    plain ``open`` would give (0666 less the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_record(rec: dict, path: Path, lineno: int) -> None:
    def fail(msg: str):
        raise ManifestError(path, lineno, msg)

    if "audio_filepath" not in rec:
        fail('missing field "audio_filepath" (expected a path string)')
    if not isinstance(rec["audio_filepath"], str) or not rec["audio_filepath"]:
        fail(f'"audio_filepath" is {rec["audio_filepath"]!r}, expected a non-empty path string')
    if "duration" not in rec:
        fail('missing field "duration" (expected seconds, a number >= 0)')
    if not _is_number(rec["duration"]) or rec["duration"] < 0:
        fail(f'"duration" is {rec["duration"]!r}, expected seconds, a number >= 0')
    if "offset" in rec and rec["offset"] is not None:
        if not _is_number(rec["offset"]) or rec["offset"] < 0:
            fail(f'"offset" is {rec["offset"]!r}, expected seconds, a number >= 0')
    for key in ("text", "label"):
        if key in rec and rec[key] is not None and not isinstance(rec[key], str):
            fail(f'"{key}" is {rec[key]!r}, expected a string')
    for key in ("rttm_filepath", "uem_filepath"):
        if key in rec and rec[key] is not None and (not isinstance(rec[key], str) or not rec[key]):
            fail(f'"{key}" is {rec[key]!r}, expected a path string or null')
    if "num_speakers" in rec and rec["num_speakers"] is not None:
        n = rec["num_speakers"]
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            fail(f'"num_speakers" is {n!r}, expected an integer >= 0 or null')


def _resolve(value: str, base: Path) -> str:
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else os.path.normpath(base / p))


def parse_manifest_line(
    line: str, path: str | Path = "<manifest>", lineno: int = 1, base: str | Path | None = None
) -> dict | None:
    """One manifest record from one line; None for a blank line.

    Args:
        base: folder against which relative path fields are made absolute; None: left as they
            are.

    Raises:
        ManifestError: not a JSON object, or a known field missing or of the wrong type.
    """
    if not line.strip():
        return None
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as e:
        raise ManifestError(
            path,
            lineno,
            f"not valid JSON ({e.msg} at column {e.colno}); expected one JSON "
            'object per line, e.g. {"audio_filepath": "a.wav", "duration": 1.5}',
        ) from None
    if not isinstance(rec, dict):
        raise ManifestError(path, lineno, f"a JSON {type(rec).__name__}, expected a JSON object")
    _check_record(rec, Path(path), lineno)
    if base is not None:
        for key in PATH_FIELDS:
            if isinstance(rec.get(key), str):
                rec[key] = _resolve(rec[key], Path(base))
    return rec


def read_manifest(path: str | Path, resolve: bool = True) -> list[dict]:
    """Read a JSON-lines manifest.

    Args:
        path: the manifest.
        resolve: make relative ``audio_filepath``/``rttm_filepath``/``uem_filepath`` absolute
            (against the manifest's folder).

    Returns:
        One dict per non-blank line, in file order.

    Raises:
        ManifestError: a line that is not a JSON object or lacks/mistypes a known field.
        FileNotFoundError: no such manifest.
    """
    path = Path(path)
    base = path.resolve().parent if resolve else None
    return read_parsed_lines(path, lambda line, p, n: parse_manifest_line(line, p, n, base))


def read_parsed_lines(path: str | Path, parse_line) -> list:
    """``parse_line(line, path, lineno)`` over every line of a text file, keeping what is not
    None (blank and comment lines give None); the parser raises ManifestError on a bad line."""
    out = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            item = parse_line(line, path, lineno)
            if item is not None:
                out.append(item)
    return out


def _relative(value: str, base: Path) -> str:
    p = Path(value)
    if not p.is_absolute():
        return p.as_posix()
    try:
        return Path(os.path.relpath(p, base)).as_posix()
    except ValueError:  # another drive on Windows
        return p.as_posix()


def ordered(record: dict) -> dict:
    """The record with known fields first, in :data:`FIELD_ORDER`."""
    out = {k: record[k] for k in FIELD_ORDER if k in record}
    out.update((k, v) for k, v in record.items() if k not in out)
    return out


def dumps_record(record: dict) -> str:
    """One manifest line (no newline)."""
    return json.dumps(ordered(record), ensure_ascii=False)


def write_manifest(path: str | Path, records: Iterable[dict], relative: bool = True) -> Path:
    """Write records as a JSON-lines manifest, atomically.

    Args:
        path: the manifest to (over)write; its folder is created.
        records: dicts with at least ``audio_filepath`` and ``duration``.
        relative: write absolute path fields relative to the manifest's folder (relative ones are
            taken to be relative to it already).

    Returns:
        ``path``.
    """
    path = Path(path)
    base = path.parent.resolve()
    lines = []
    for i, rec in enumerate(records, 1):
        rec = dict(rec)
        for key in PATH_FIELDS:
            if isinstance(rec.get(key), str):
                rec[key] = _relative(rec[key], base) if relative else rec[key]
        _check_record(rec, path, i)
        lines.append(dumps_record(rec) + "\n")
    atomic_write_text(path, "".join(lines))
    return path
