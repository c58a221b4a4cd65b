"""Peak memory (RSS) of diarization inference on very long sessions.

    .venv/bin/python benchmarks/diar_long_sessions.py [--encoders fbank nest-embedded]
        [--minutes 10 60] [--work DIR] [--json FILE] [key=value ...]

Builds data folders (nestbench's layout) from the embedded corpus's ``diar/`` folder: its train
and dev splits, and as the test split either its own 12 sessions (``baseline``) or one session of
``--minutes`` made by concatenating one embedded test session with itself (audio written a
session at a time, never held whole; RTTM turns shifted). For each encoder and test split, one
frozen ``nestbench run --task diar`` (1 epoch, a fresh feature cache) in its own process; it
prints the peak RSS (``os.wait4``), the wall time and the test DER. Inference cuts a session into
``diar.window_seconds`` windows every ``diar.hop_seconds`` and stitches [T, S] activities, so
memory is bounded by the window, not by the session.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import soundfile as sf
from _measure import measured

from nestbench.data.embedded import ensure_embedded_corpus
from nestbench.data.manifest import read_manifest
from nestbench.data.rttm import Segment, read_rttm, write_rttm


def _write_manifest(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def make_long_session(src: dict, minutes: float, out: Path) -> dict:
    """``src`` (a manifest record with absolute paths) repeated to ``minutes``: wav + RTTM."""
    audio, sr = sf.read(src["audio_filepath"], dtype="float32")
    turns = read_rttm(src["rttm_filepath"])
    uri = f"long{int(minutes)}min"
    seconds = audio.shape[0] / sr
    repeats = max(1, int(round(minutes * 60 / seconds)))
    wav, rttm = out / "test" / f"{uri}.wav", out / "test" / f"{uri}.rttm"
    wav.parent.mkdir(parents=True, exist_ok=True)
    shifted = []
    with sf.SoundFile(wav, "w", sr, 1, subtype="PCM_16") as f:
        for k in range(repeats):
            f.write(audio)
            shifted += [Segment(uri, t.onset + k * seconds, t.duration, t.speaker) for t in turns]
    write_rttm(rttm, shifted)
    return {"audio_filepath": str(wav), "offset": 0.0, "duration": repeats * seconds,
            "rttm_filepath": str(rttm)}  # fmt: skip


def make_data(work: Path, minutes: list[float]) -> dict[str, Path]:
    corpus = ensure_embedded_corpus("default") / "diar"
    splits = {s: read_manifest(corpus / f"{s}_manifest.json") for s in ("train", "dev", "test")}
    for recs in splits.values():
        for r in recs:
            r.pop("uem_filepath", None)  # the whole session is scored
    folders = {}
    source = max(splits["test"], key=lambda r: r["num_speakers"])  # a 4-speaker session
    for label in ["baseline", *(f"{m:g}min" for m in minutes)]:
        root = work / label
        base = root / "diar"
        if label == "baseline":
            test = splits["test"]
        else:
            test = [make_long_session(source, float(label[:-3]), base)]
        for split, recs in (("train", splits["train"]), ("dev", splits["dev"]), ("test", test)):
            _write_manifest(base / f"{split}_manifest.json", recs)
        folders[label] = root
    return folders


def measured_run(encoder: str, data: Path, out: Path, overrides: list[str]) -> dict:
    """One `nestbench run --task diar` in its own process: peak RSS (GB), wall time, DER."""
    cmd = [
        sys.executable, "-m", "nestbench.cli", "run", "--task", "diar", "--encoder", encoder,
        "--data", str(data), "--out", str(out), "--force",
        f"cache.root={out / 'cache'}", "trainer.max_epochs=1", "trainer.progress=false",
        "diar.bootstrap=100", *overrides,
    ]  # fmt: skip
    rss, wall, _ = measured(cmd)
    (result,) = (out / "diar").glob("*/result.json")
    doc = json.loads(result.read_text())
    return {
        "peak_rss_gb": rss,
        "wall_s": wall,
        "evaluate_s": doc["timings_s"].get("evaluate"),
        "test_hours": round(doc["metrics"]["test"]["speech_seconds"]["value"] / 3600, 3),
        "der": round(doc["metrics"]["test"]["der"]["value"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--encoders", nargs="+", default=["fbank", "nest-embedded"])
    ap.add_argument("--minutes", nargs="+", type=float, default=[10, 60])
    ap.add_argument("--work", default=None, help="folder for the data and runs (default: temp)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="nb-diar-bench-"))
    folders = make_data(work / "data", args.minutes)
    print(f"uptime: {os.getloadavg()}", flush=True)
    figures: dict = {"minutes": args.minutes, "runs": {}}
    for encoder in args.encoders:
        for label, data in folders.items():
            r = measured_run(encoder, data, work / "runs" / encoder / label, args.overrides)
            figures["runs"][f"{encoder}/{label}"] = r
            print(f"{encoder:>14} {label:>8}: peak RSS {r['peak_rss_gb']:.2f} GB, "
                  f"{r['wall_s']:.0f} s (evaluate {r['evaluate_s']} s), "
                  f"DER {r['der']:.1f}%", flush=True)  # fmt: skip
    print(f"uptime: {os.getloadavg()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
