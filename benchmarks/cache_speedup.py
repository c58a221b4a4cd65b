"""Wall time of a 5-epoch frozen SV run with the feature cache vs re-running the encoder every
epoch (the s3prl way), in one process on the same data, encoder and config.

    .venv/bin/python benchmarks/cache_speedup.py [--encoder nest-small] [--data DIR]
        [--size small] [--epochs 5] [key=value ...]

Three runs, each from a fresh output folder:
  1. cache, cold: the cache starts empty, so this includes computing every utterance once;
  2. cache, warm: a second seed reusing the cache (what every later run of a sweep pays);
  3. no cache: ``cache.enabled=false``, the encoder runs on every batch of every epoch.
Ratios are no-cache time / cached time. Pass ``trainer.accelerator=gpu`` etc. as overrides.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from nestbench.runner import run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--encoder", default="nest-small")
    ap.add_argument("--data", default=None, help="SV data folder (default: embedded corpus)")
    ap.add_argument("--size", default="small", help="embedded corpus size when --data is absent")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--json", default=None, help="also write the figures here")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="nb-cache-bench-"))
    common = [
        f"trainer.max_epochs={args.epochs}",
        f"trainer.patience={args.epochs + 1}",
        f"cache.root={work / 'cache'}",
        f"data_size={args.size}",
        "trainer.progress=false",
        *args.overrides,
    ]

    def timed(label: str, *extra: str, seed: int = 0) -> dict:
        t = time.perf_counter()
        _, result = run(
            "sv",
            [*common, *extra],
            encoder=args.encoder,
            data=args.data,
            seed=seed,
            out=str(work / label),
            force=True,
        )
        wall = time.perf_counter() - t
        print(
            f"{label:>12}: {wall:8.1f} s  (timings {result.timings_s}, "
            f"EER {result.value('eer'):.2f}%)",
            flush=True,
        )
        return {
            "wall_s": round(wall, 2),
            "timings_s": result.timings_s,
            "eer": result.value("eer"),
        }

    cold = timed("cache-cold")
    warm = timed("cache-warm", seed=1)
    nocache = timed("no-cache", "cache.enabled=false")
    figures = {
        "encoder": args.encoder,
        "epochs": args.epochs,
        "cache_cold": cold,
        "cache_warm": warm,
        "no_cache": nocache,
        "speedup_cold": round(nocache["wall_s"] / cold["wall_s"], 2),
        "speedup_warm": round(nocache["wall_s"] / warm["wall_s"], 2),
    }
    print(
        f"no-cache / cache (cold): {figures['speedup_cold']:.2f}x; "
        f"no-cache / cache (warm): {figures['speedup_warm']:.2f}x"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
