"""Training time of frozen task runs under variants of their settings, against the first variant,
in one process on the same cached features: what makes the heads of a sweep cheaper.

    .venv/bin/python benchmarks/head_speed.py --task asr --encoder fbank --epochs 3 \
        --variant "memmap:cache.memory_mb=0" --variant "held:" \
        --variant "held+bf16:trainer.precision=bf16-mixed" [--rounds 2] [key=value ...]

Each ``--variant NAME:OVERRIDES`` (comma-separated ``key=value``; empty: the defaults) runs
``--rounds`` times, the variants taking turns in each round (so a slow spell of a shared machine
reaches all of them), each from a fresh output folder with ``--force``. The feature cache is
``--cache-root`` (default: the committed benchmark's ``results/cache``), filled by the first run
when it is empty; fills are left out of the figures, which are the runs' ``train`` seconds
(``timings_s``: fit, including the dev evaluation of every epoch). The ratio is the first
variant's median over this one's (higher: faster). One torch thread, as in a sweep of two jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from nestbench.runner import run


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, rest = text.partition(":")
    if not sep or not name:
        raise SystemExit(f"--variant {text!r}: expected NAME:key=value,key=value (or NAME:)")
    return name, [o for o in rest.split(",") if o]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--task", required=True)
    ap.add_argument("--encoder", default="fbank")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--variant", action="append", required=True, type=parse_variant)
    ap.add_argument("--cache-root", default="results/cache")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"load average before: {os.getloadavg()}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="nb-head-speed-"))
    common = [
        f"trainer.max_epochs={args.epochs}",
        f"trainer.patience={args.epochs + 1}",
        f"cache.root={args.cache_root}",
        "trainer.progress=false",
        *args.overrides,
    ]
    times: dict[str, list[float]] = {name: [] for name, _ in args.variant}
    metrics: dict[str, list] = {name: [] for name, _ in args.variant}
    for r in range(args.rounds):
        for name, extra in args.variant:
            _, result = run(
                args.task,
                [*common, *extra],
                encoder=args.encoder,
                out=str(work / f"{name}-{r}"),
                force=True,
            )
            train = float(result.timings_s["train"])
            times[name].append(train)
            metrics[name].append(result.value(result.primary_metric))
            print(
                f"round {r} {name:>16}: train {train:7.1f} s  "
                f"{result.primary_metric} {metrics[name][-1]:.2f}",
                flush=True,
            )
    base = statistics.median(times[args.variant[0][0]])
    rows = []
    for name, extra in args.variant:
        med = statistics.median(times[name])
        rows.append(
            {
                "variant": name,
                "overrides": extra,
                "train_s": times[name],
                "median_s": med,
                "speedup": base / med,
                args.task: metrics[name],
            }
        )
        print(f"{name:>16}: median {med:7.1f} s  x{base / med:.2f}  ({' '.join(extra) or '-'})")
    print(f"load average after: {os.getloadavg()}", flush=True)
    if args.json:
        args.json.write_text(json.dumps({"argv": sys.argv[1:], "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
