"""SLURP (Bastianelli et al., 2020): ``dataset/slurp/{train,devel,test}.jsonl`` (and
``train_synthetic.jsonl``) from its repository, audio in ``audio/slurp_real`` and
``audio/slurp_synth``."""

from __future__ import annotations

import json
from pathlib import Path

from ..manifest import ManifestError, write_manifest
from ..slurp import record_entities, validate_record, write_slurp
from .common import ImportError_, audio_duration, require_dir

SPLIT_FILES = {
    "train": "train",
    "devel": "dev",
    "test": "test",
    "train_synthetic": "train_synthetic",
}


def _find_jsonl(src: Path) -> dict[str, Path]:
    for folder in (src / "dataset" / "slurp", src / "slurp", src):
        found = {
            split: folder / f"{stem}.jsonl"
            for stem, split in SPLIT_FILES.items()
            if (folder / f"{stem}.jsonl").is_file()
        }
        if found:
            return found
    return {}


def _audio_dirs(src: Path) -> list[Path]:
    candidates = [
        src / "audio" / "slurp_real",
        src / "audio" / "slurp_synth",
        src / "audio",
        src / "slurp_real",
        src / "slurp_synth",
    ]
    return [c for c in candidates if c.is_dir()]


def prepare_slurp(
    src: str | Path,
    out: str | Path,
    audio_dirs: list[str | Path] | None = None,
    skip_missing: bool = False,
) -> dict[str, Path]:
    """Import SLURP: per split, the validated records (``<split>.jsonl``, the gold file for
    scoring) and a manifest with one line per recording (``audio_filepath``, ``duration``,
    ``text`` = sentence, ``label`` = intent, ``slurp_id``, ``scenario``, ``action``,
    ``entities`` as ``{type, filler}``). ``devel`` is renamed ``dev``.

    Args:
        src: the SLURP folder (``dataset/slurp/*.jsonl`` and ``audio/``), or a folder with the
            jsonl files.
        audio_dirs: where the recordings are; default: ``audio/slurp_real``,
            ``audio/slurp_synth`` and ``audio`` under ``src``.
        skip_missing: leave out recordings whose file is missing instead of failing.

    Returns:
        Split -> manifest path.

    Raises:
        ImportError_: no jsonl; ManifestError: a malformed record, or a missing recording.
    """
    src = require_dir(src, "SLURP: dataset/slurp/*.jsonl and audio/")
    files = _find_jsonl(src)
    if not files:
        raise ImportError_(
            f"{src}: no SLURP jsonl found (expected dataset/slurp/train.jsonl, "
            "devel.jsonl, test.jsonl)"
        )
    dirs = [Path(d) for d in audio_dirs] if audio_dirs else _audio_dirs(src)
    out = Path(out)
    written = {}
    for split, path in files.items():
        records, manifest = [], []
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError as e:
                    raise ManifestError(
                        path,
                        lineno,
                        f"not valid JSON ({e.msg}); expected one "
                        "SLURP record (JSON object) per line",
                    ) from None
                validate_record(rec, path, lineno)
                records.append(rec)
                entities = record_entities(rec)
                for recording in rec.get("recordings", []):
                    audio = next(
                        (d / recording["file"] for d in dirs if (d / recording["file"]).is_file()),
                        None,
                    )
                    if audio is None:
                        if skip_missing:
                            continue
                        raise ManifestError(
                            path,
                            lineno,
                            f"recording {recording['file']} not "
                            f"found in {', '.join(map(str, dirs)) or '(none)'}; "
                            "pass the audio folder or skip missing ones",
                        )
                    manifest.append(
                        {
                            "audio_filepath": str(audio.resolve()),
                            "duration": audio_duration(audio),
                            "text": rec["sentence"],
                            "label": rec["intent"],
                            "slurp_id": rec["slurp_id"],
                            "scenario": rec["scenario"],
                            "action": rec["action"],
                            "entities": entities,
                        }
                    )
        write_slurp(out / f"{split}.jsonl", records)
        written[split] = write_manifest(out / f"{split}_manifest.json", manifest)
    return written
