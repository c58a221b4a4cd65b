"""Helpers for the data tests: the tiny embedded corpus (generated once per test session) and
small fake corpora in the layouts of LibriSpeech, VoxCeleb, SLURP and RTTM-annotated folders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf

from nestbench.data.slu_templates import tag
from nestbench.data.slurp import make_record
from nestbench.data.synth import synthesize_corpus

_TINY: dict[tuple[int, int], Path] = {}


def tiny_corpus(tmp_path_factory, seed: int = 0, workers: int = 2) -> Path:
    """The tiny corpus for (seed, workers), generated on first request in this session."""
    key = (seed, workers)
    if key not in _TINY:
        out = tmp_path_factory.mktemp(f"tiny_s{seed}_w{workers}") / "corpus"
        synthesize_corpus(out, size="tiny", seed=seed, workers=workers, progress=False)
        _TINY[key] = out
    return _TINY[key]


def write_wav(
    path: Path, seconds: float, sr: int = 16000, channels: int = 1, fmt: str | None = None
) -> Path:
    """A short noise file (deterministic), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n = int(round(seconds * sr))
    x = 0.1 * np.random.default_rng(n).standard_normal((n, channels) if channels > 1 else n)
    sf.write(str(path), x, sr, subtype="PCM_16", format=fmt)
    return path


def make_librispeech(root: Path) -> Path:
    """``root/LibriSpeech/{train-clean-100,dev-clean,test-clean,test-other}/<spk>/<chapter>/``
    with flac and transcripts."""
    base = root / "LibriSpeech"
    layout = {
        "train-clean-100": [("19", "198", 3), ("26", "495", 2)],
        "dev-clean": [("84", "121123", 3), ("174", "50561", 2)],
        "test-clean": [("1089", "134686", 2)],
        "test-other": [("1688", "142285", 1)],
    }
    for split, chapters in layout.items():
        for spk, ch, n in chapters:
            folder = base / split / spk / ch
            lines = []
            for u in range(n):
                utt = f"{spk}-{ch}-{u:04d}"
                write_wav(folder / f"{utt}.flac", 1.0 + 0.25 * u, fmt="FLAC")
                lines.append(f"{utt} HELLO WORLD NUMBER {u}\n")
            (folder / f"{spk}-{ch}.trans.txt").write_text("".join(lines))
    return base


def make_voxceleb(root: Path) -> Path:
    """``root/vox1/wav/id1000{1..8}/<video>/0000n.wav`` (4 utterances each) and
    ``root/vox1/veri_test2.txt`` naming speakers id10003 and id10004."""
    base = root / "vox1"
    for s in range(1, 9):
        for v, video in enumerate(["aaaaaaaaaaa", "bbbbbbbbbbb"]):
            for u in range(2):
                write_wav(base / "wav" / f"id1000{s}" / video / f"{v * 2 + u + 1:05d}.wav", 1.0)
    (base / "veri_test2.txt").write_text(
        "1 id10003/aaaaaaaaaaa/00001.wav id10003/bbbbbbbbbbb/00003.wav\n"
        "0 id10003/aaaaaaaaaaa/00001.wav id10004/aaaaaaaaaaa/00002.wav\n"
        "1 id10004/aaaaaaaaaaa/00001.wav id10004/bbbbbbbbbbb/00004.wav\n"
        "0 id10004/bbbbbbbbbbb/00003.wav id10003/bbbbbbbbbbb/00004.wav\n"
    )
    return base


def make_slurp(root: Path) -> Path:
    """``root/slurp/dataset/slurp/{train,devel,test}.jsonl`` and ``root/slurp/audio/slurp_real``."""
    base = root / "slurp"
    sid = 100
    for stem in ("train", "devel", "test"):
        recs = []
        for i in range(2):
            sid += 1
            files = [f"audio-{sid}{k}.flac" for k in range(2)]
            for f in files:
                write_wav(base / "audio" / "slurp_real" / f, 1.5, fmt="FLAC")
            recs.append(
                make_record(
                    sid,
                    "alarm",
                    "set",
                    ["wake me up at", ("time", "nine am"), "please"]
                    if i == 0
                    else ["what is the weather in", ("place_name", "new york")],
                    [{"file": f, "wer": 0.0, "ent_wer": 0.0, "status": "correct"} for f in files],
                    tag,
                )
            )
            if i == 1:
                recs[-1].update(scenario="weather", action="query", intent="weather_query")
        path = base / "dataset" / "slurp" / f"{stem}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return base


def make_rttm_folder(root: Path) -> Path:
    """``root/diar/audio/{meetA,meetB}.wav``, one RTTM for both, a UEM for meetA."""
    base = root / "diar"
    write_wav(base / "audio" / "meetA.wav", 6.0)
    write_wav(base / "audio" / "meetB.wav", 4.0)
    (base / "ref").mkdir(parents=True)
    (base / "ref" / "all.rttm").write_text(
        "SPEAKER meetA 1 0.50 2.00 <NA> <NA> alice <NA> <NA>\n"
        "SPEAKER meetA 1 2.20 3.00 <NA> <NA> bob <NA> <NA>\n"
        "SPKR-INFO meetA 1 <NA> <NA> <NA> unknown alice <NA> <NA>\n"
        "SPEAKER meetB 1 0.00 3.50 <NA> <NA> carol <NA> <NA>\n"
    )
    (base / "ref" / "meetA.uem").write_text("meetA 1 0.000 6.000\n")
    return base
