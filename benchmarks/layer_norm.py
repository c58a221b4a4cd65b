"""Normalised vs unnormalised layers in the featurizer: the same runs with
``featurizer.layer_norm=false`` and ``true``, side by side, with the final effective layer
shares (each layer's softmax weight times its scale, as a share of the sum).

    .venv/bin/python benchmarks/layer_norm.py --toy                       # the three toy tasks
    .venv/bin/python benchmarks/layer_norm.py --sv nest-embedded fbank    # SV, embedded corpus

The toy tasks are those of ``tests/toy_tasks.py`` on their generated folders (run from the repo
root); SV runs use all the defaults of ``nestbench run --task sv`` otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nestbench.runner import run  # noqa: E402


def compare(task: str, encoder: str, data: str | None, out: Path, extra: list[str]) -> list[dict]:
    rows = []
    for norm in ("false", "true"):
        t = time.perf_counter()
        _, result = run(
            task,
            [f"featurizer.layer_norm={norm}", "trainer.progress=false", *extra],
            encoder=encoder,
            data=data,
            out=str(out),
            force=True,
        )
        split = result.eval_splits[0]
        m = result.metrics[split][result.primary_metric]
        rows.append(
            {
                "task": task,
                "encoder": encoder,
                "layer_norm": norm,
                "split": split,
                result.primary_metric: round(m["value"], 2),
                "ci95": [round(v, 2) for v in m.get("ci95", [])],
                "best_epoch": result.best_epoch,
                "weights": result.layer_weights["final"],
                "effective_shares": result.layer_weights["effective_shares"],
                "wall_s": round(time.perf_counter() - t, 1),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--toy", action="store_true", help="the three toy tasks")
    p.add_argument("--sv", nargs="*", default=[], help="encoders to compare on SV")
    p.add_argument("--json", default=None, help="write all rows here")
    p.add_argument("overrides", nargs="*", help="key=value for every run")
    args = p.parse_args()
    out = Path(tempfile.mkdtemp(prefix="layer_norm-"))
    rows = []
    if args.toy:
        from tests import toy_tasks

        toy_tasks.register()
        epochs = {"toy_utt": 6, "toy_frames": 8, "toy_ctc": 15}
        for name, make in toy_tasks.MAKERS.items():
            data = make(out / f"data-{name}")
            extra = [f"trainer.max_epochs={epochs[name]}", "optim.lr=0.05", "trainer.batch_size=8"]
            rows += compare(
                name, "tests.toy_encoders:SpectralEncoder", str(data), out, extra + args.overrides
            )
    for encoder in args.sv:
        rows += compare("sv", encoder, None, out, args.overrides)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
