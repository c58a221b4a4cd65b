"""SLURP (Bastianelli et al., 2020): ``dataset/slurp/{train,devel,test}.jsonl`` (and
``train_synthetic.jsonl``) from its repository, audio in ``audio/slurp_real`` and
``audio/slurp_synth``."""

from __future__ import annotations

from pathlib import Path

from ..layout import Writer, task_dir
from ..manifest import ManifestError, read_parsed_lines
from ..slurp import parse_slurp_line, record_entities, write_slurp
from .common import ImportError_, audio_duration, require_dir

SPLIT_FILES = {
    "train": "train",
    "devel": "dev",
    "test": "test",
    "train_synthetic": "train_synthetic",
}
SPLIT_STEMS = {split: stem for stem, split in SPLIT_FILES.items()}


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
    synthetic: bool = True,
    force: bool = False,
) -> dict[str, Path]:
    """Import SLURP into ``out/slu/`` (:mod:`nestbench.data.layout`): per split, the validated
    records (``<split>.jsonl``, the gold file for scoring) and a manifest with one line per
    recording (``audio_filepath``, ``duration``, ``text`` = sentence, ``label`` = intent,
    ``slurp_id``, ``scenario``, ``action``, ``entities`` as ``{type, filler}``). ``devel`` is
    renamed ``dev``; ``train_synthetic`` joins ``train`` (as in SLURP's own recipes) unless
    ``synthetic`` is off.

    Args:
        src: the SLURP folder (``dataset/slurp/*.jsonl`` and ``audio/``), or a folder with the
            jsonl files.
        audio_dirs: where the recordings are; default: ``audio/slurp_real``,
            ``audio/slurp_synth`` and ``audio`` under ``src``.
        skip_missing: leave out recordings whose file is missing instead of failing.
        force: replace existing split files in ``out/slu``.

    Returns:
        Split -> manifest path (and ``splits``).

    Raises:
        ImportError_: no jsonl, or no train/dev/test; ManifestError: a malformed record, or a
        missing recording; LayoutError: an output exists and ``force`` is off.
    """
    src = require_dir(src, "SLURP: dataset/slurp/*.jsonl and audio/")
    files = _find_jsonl(src)
    if not files:
        raise ImportError_(
            f"{src}: no SLURP jsonl found (expected dataset/slurp/train.jsonl, "
            "devel.jsonl, test.jsonl)"
        )
    lacking = [SPLIT_STEMS[s] for s in ("train", "dev", "test") if s not in files]
    if lacking:
        raise ImportError_(
            f"{src}: no {', '.join(f'{n}.jsonl' for n in lacking)} beside "
            f"{next(iter(files.values())).name} (SLURP has train, devel and test)"
        )
    if not synthetic:
        files.pop("train_synthetic", None)
    dirs = [Path(d) for d in audio_dirs] if audio_dirs else _audio_dirs(src)
    writer = Writer(out, "slu", force)
    writer.check_free(["train", "dev", "test"])
    for split in ("train", "dev", "test"):
        writer.claim(task_dir(out, "slu") / f"{split}.jsonl")
    collected: dict[str, tuple[list[dict], list[dict]]] = {}
    for split, path in files.items():
        target = "train" if split == "train_synthetic" else split
        records, manifest = collected.setdefault(target, ([], []))
        _read_jsonl(path, dirs, skip_missing, records, manifest)
    for split in ("train", "dev", "test"):
        records, manifest = collected[split]
        write_slurp(task_dir(out, "slu") / f"{split}.jsonl", records)
        writer.manifest(split, manifest)
    writer.splits("dev", ["test"])
    return writer.written


def _read_jsonl(
    path: Path, dirs: list[Path], skip_missing: bool, records: list[dict], manifest: list[dict]
) -> None:
    """Append the validated records of one SLURP jsonl and a manifest line per recording."""
    numbered = read_parsed_lines(
        path, lambda line, p, n: (n, rec) if (rec := parse_slurp_line(line, p, n)) else None
    )
    for lineno, rec in numbered:
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
                    f"recording {recording['file']} not found in "
                    f"{', '.join(map(str, dirs)) or '(none)'}; "
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
