"""What the memory benchmarks share: one command in its own process, measured."""

from __future__ import annotations

import os
import subprocess
import time


def measured(cmd: list[str]) -> tuple[float, float, str]:
    """Run ``cmd``; its peak RSS in GB (``os.wait4``: that process alone), its wall time in
    seconds and its output. Exits naming the command and its last output if it fails."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{output[-3000:]}")
    return round(usage.ru_maxrss / 2**20, 3), round(wall, 1), output  # ru_maxrss: KiB on Linux


def shipped_or(path: str | None) -> str:
    """``path``, or the shipped ``nest_embedded.nemo`` when it is None (the benchmarks' default
    ``--model``)."""
    if path is not None:
        return path
    from nestbench.weights import weights_path

    return str(weights_path())


def model_and_audio_arguments(ap) -> None:
    """``--model``, ``--corpus-size`` and ``--pool`` of the pretraining benchmarks."""
    ap.add_argument("--model", default=None, help="a NEST .nemo (default: the shipped one)")
    ap.add_argument("--corpus-size", default="default", choices=["tiny", "small", "default"])
    ap.add_argument(
        "--pool",
        type=float,
        default=None,
        metavar="HOURS",
        help="use the clean pretraining pool of HOURS instead: its eval part (test speakers, "
        "fresh sentences) as held-out audio, its train part as the reference",
    )


def parse_with_threads_and_json(ap):
    """Add ``--threads`` and ``--json``, parse, and apply ``--threads`` (torch intra-op
    threads) before anything runs."""
    from pathlib import Path

    import torch

    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args
