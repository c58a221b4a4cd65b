"""Peak memory (RSS) of a frozen SV run whose training set holds very long recordings.

    .venv/bin/python benchmarks/long_recordings.py [--encoders fbank nest-embedded]
        [--long-minutes 10 30 180] [--work DIR] [--json FILE] [key=value ...]

Writes an SV data folder (nestbench's layout): 12 training speakers with 5 short utterances each
(tones in noise, as the tests' SV folders), 4 dev and 4 test speakers with every pair as a trial,
and, as training recordings of three of the training speakers, one recording per
``--long-minutes`` (default 10, 30 and 180 minutes; written in blocks, never held whole). For each
encoder, two frozen runs (1 epoch, a fresh feature cache each), each in its own process:

  1. baseline: the short utterances only;
  2. long: the same plus the long recordings.

It prints each run's peak RSS (``os.wait4`` of that process), wall time and EER, and the
long/baseline ratio. The run must stay below 4 GB whatever the recording length: long recordings
go through the encoder in windows (``encoder.chunk_seconds``), stream into the feature cache,
get a batch of their own (``trainer.batch_seconds``), and AS-norm scores in blocks.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from _measure import measured

SR = 16000


def _tone_speaker(s: int, seconds: float, rng: np.random.Generator, start: float = 0.0):
    t = start + np.arange(int(SR * seconds)) / SR
    freqs = 150 + 90 * np.array([s % 5, 2 + s % 3, 4 + s % 7]) + 13 * s
    x = sum(np.sin(2 * np.pi * f * t + 0.5 * f) for f in freqs) / 3
    return (0.3 * x + 0.02 * rng.standard_normal(t.size)).astype(np.float32)


def write_long(path: Path, speaker: int, minutes: float, seed: int) -> float:
    """A recording of ``minutes`` of one 'speaker', written a minute at a time."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    total = int(round(minutes * 60))
    with sf.SoundFile(path, "w", SR, 1, subtype="PCM_16") as f:
        for m in range(0, total, 60):
            f.write(_tone_speaker(speaker, min(60, total - m), rng, start=m))
    return float(total)


def make_data(root: Path, long_minutes: list[float], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    spk = itertools.count()
    splits = {"train": 12, "dev": 4, "test": 4}
    records: dict[str, list[dict]] = {}
    for split, n in splits.items():
        recs = []
        for _ in range(n):
            s = next(spk)
            for u in range(5):
                rel = Path("wav") / split / f"spk{s:02d}" / f"u{u}.wav"
                x = _tone_speaker(s, float(rng.uniform(1.5, 4.0)), rng)
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                sf.write(root / rel, x, SR, subtype="PCM_16")
                recs.append(
                    {"audio_filepath": str(rel), "duration": x.size / SR, "label": f"spk{s:02d}"}
                )
        records[split] = recs
    baseline = root / "baseline" / "sv"
    long = root / "long" / "sv"
    for folder in (baseline, long):
        folder.mkdir(parents=True, exist_ok=True)
        for split, recs in records.items():
            write_jsonl(folder / f"{split}_manifest.json", recs, root)
            if split != "train":
                lines = [
                    f"{int(a['label'] == b['label'])} {a['audio_filepath']} {b['audio_filepath']}"
                    for a, b in itertools.combinations(recs, 2)
                ]
                (folder / f"{split}_trials.txt").write_text("\n".join(lines) + "\n")
    extra = []
    for i, minutes in enumerate(long_minutes):
        rel = Path("wav") / "long" / f"spk{i:02d}_{minutes:g}min.wav"
        print(f"writing {minutes:g} min recording {rel} ...", flush=True)
        secs = write_long(root / rel, i, minutes, seed + 100 + i)
        extra.append({"audio_filepath": str(rel), "duration": secs, "label": f"spk{i:02d}"})
    write_jsonl(long / "train_manifest.json", records["train"] + extra, root)


def write_jsonl(path: Path, recs: list[dict], root: Path) -> None:
    rows = [{**r, "audio_filepath": str((root / r["audio_filepath"]).resolve())} for r in recs]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def measured_run(encoder: str, data: Path, out: Path, overrides: list[str]) -> dict:
    """One `nestbench run` in its own process: peak RSS (GB), wall time, EER."""
    cmd = [
        sys.executable, "-m", "nestbench.cli", "run", "--task", "sv", "--encoder", encoder,
        "--data", str(data), "--out", str(out), "--force",
        f"cache.root={out / 'cache'}", "trainer.max_epochs=1", "trainer.progress=false",
        *overrides,
    ]  # fmt: skip
    rss, wall, _ = measured(cmd)
    (result,) = (out / "sv").glob("*/result.json")
    doc = json.loads(result.read_text())
    return {
        "peak_rss_gb": rss,
        "wall_s": wall,
        "eer": round(doc["metrics"]["test"]["eer"]["value"], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--encoders", nargs="+", default=["fbank", "nest-embedded"])
    ap.add_argument("--long-minutes", nargs="+", type=float, default=[10, 30, 180])
    ap.add_argument("--work", default=None, help="folder for the data and runs (default: temp)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    work = Path(args.work or tempfile.mkdtemp(prefix="nb-long-bench-"))
    data = work / "data"
    if not (data / "long" / "sv" / "train_manifest.json").is_file():
        make_data(data, args.long_minutes)
    print(f"uptime: {os.getloadavg()}", flush=True)
    figures = {"long_minutes": args.long_minutes, "runs": {}}
    for encoder in args.encoders:
        for label in ("baseline", "long"):
            r = measured_run(encoder, data / label, work / "runs" / encoder / label, args.overrides)
            figures["runs"][f"{encoder}/{label}"] = r
            print(f"{encoder:>14} {label:>8}: peak RSS {r['peak_rss_gb']:.2f} GB, "
                  f"{r['wall_s']:.0f} s, EER {r['eer']:.2f}%", flush=True)  # fmt: skip
        ratio = figures["runs"][f"{encoder}/long"]["peak_rss_gb"] / max(
            1e-9, figures["runs"][f"{encoder}/baseline"]["peak_rss_gb"]
        )
        print(f"{encoder:>14}    ratio: {ratio:.2f} x the baseline's peak RSS", flush=True)
    print(f"uptime: {os.getloadavg()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
