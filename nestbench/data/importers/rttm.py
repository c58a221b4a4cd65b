"""Diarization corpora as a folder of recordings with RTTM references (one RTTM per recording
or one for all) and optional UEM files; recordings are matched to RTTM file ids by file name
without extension."""

from __future__ import annotations

from pathlib import Path

from ..layout import Writer, split_dir
from ..manifest import ManifestError
from ..rttm import RTTM_FORMAT, Segment, UEMRegion, parse_rttm_line, read_uem, write_rttm, write_uem
from .common import AUDIO_EXTENSIONS, ImportError_, audio_duration, require_dir


def prepare_rttm(
    src: str | Path, out: str | Path, split: str = "test", force: bool = False
) -> Path:
    """Import a folder of recordings with RTTM (and UEM) files as one split of ``out/diar/``
    (:mod:`nestbench.data.layout`); import the train, dev and test folders one by one.

    Writes per recording ``diar/<split>/rttm/<id>.rttm`` (and ``diar/<split>/uem/<id>.uem``
    where a UEM covers it) under ``out``, and ``diar/<split>_manifest.json`` with
    ``audio_filepath``, ``offset`` 0, ``duration``, ``text`` "-", ``label`` "infer",
    ``num_speakers``, ``rttm_filepath`` and ``uem_filepath``.

    Raises:
        ImportError_: no audio, duplicate recording names, or recordings without references;
        ManifestError: a malformed RTTM/UEM line, or one naming an unknown recording;
        LayoutError: a bad split name, or the split's manifest exists and ``force`` is off.
    """
    src = require_dir(src, "recordings with RTTM files")
    writer = Writer(out, "diar", force)
    writer.check_free([split])
    audio: dict[str, Path] = {}
    for f in sorted(src.rglob("*")):
        if f.suffix in AUDIO_EXTENSIONS and f.is_file():
            if f.stem in audio:
                raise ImportError_(f"two recordings named {f.stem}: {audio[f.stem]} and {f}")
            audio[f.stem] = f
    if not audio:
        raise ImportError_(f"{src}: no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    segments: dict[str, list[Segment]] = {}
    for path in sorted(src.rglob("*.rttm")):
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                seg = parse_rttm_line(line, path, lineno)
                if seg is None:
                    continue
                if seg.file_id not in audio:
                    raise ManifestError(
                        path,
                        lineno,
                        f"file id {seg.file_id!r} has no "
                        f"recording {seg.file_id}.wav/.flac under {src}; "
                        f"format: {RTTM_FORMAT}",
                    )
                segments.setdefault(seg.file_id, []).append(seg)
    regions: dict[str, list[UEMRegion]] = {}
    for path in sorted(src.rglob("*.uem")):
        for r in read_uem(path):
            if r.file_id not in audio:
                raise ManifestError(path, None, f"UEM file id {r.file_id!r} has no recording")
            regions.setdefault(r.file_id, []).append(r)
    missing = sorted(set(audio) - set(segments))
    if missing:
        raise ImportError_(
            f"{len(missing)} recording(s) without RTTM segments: "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    refs = split_dir(out, "diar", split)
    records = []
    for stem, wav in audio.items():
        rttm = refs / "rttm" / f"{stem}.rttm"
        write_rttm(rttm, segments[stem])
        rec = {
            "audio_filepath": str(wav.resolve()),
            "offset": 0.0,
            "duration": audio_duration(wav),
            "text": "-",
            "label": "infer",
            "num_speakers": len({s.speaker for s in segments[stem]}),
            "rttm_filepath": str(rttm.resolve()),
        }
        if stem in regions:
            uem = refs / "uem" / f"{stem}.uem"
            write_uem(uem, regions[stem])
            rec["uem_filepath"] = str(uem.resolve())
        records.append(rec)
    return writer.manifest(split, records)
