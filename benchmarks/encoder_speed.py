#!/usr/bin/env python
"""Speed and peak memory of a nestbench encoder (default ``nest-large``).

For every configuration of the grid (audio duration x batch size x dtype) the encoder's forward
pass is timed in eval mode under ``torch.inference_mode()``, after warm-up, and its peak memory
measured. Each configuration runs in a fresh Python subprocess, so memory peaks, allocator caches
and oneDNN primitive caches of one configuration do not leak into the next.

Reported per configuration:

- ``wall_ms``: median wall-clock time of one forward pass over the whole batch (``--repeats`` runs);
- ``rtfx``: real-time factor as audio seconds processed per wall second
  (``batch * duration / wall``); higher is faster, 1.0 is real time;
- ``peak_mb``: memory used by the forward pass on top of the loaded model.
  CUDA: ``torch.cuda.max_memory_allocated()`` minus ``torch.cuda.memory_allocated()`` after the
  model and input were placed on the device (tensors only, not the caching allocator's reserve).
  CPU: growth of the process's peak resident set size: the peak (``VmHWM``) is reset through
  ``/proc/self/clear_refs`` after the model is loaded and the input built, and ``VmHWM - VmRSS``
  is read after the timed runs (Linux >= 4.0; elsewhere ``ru_maxrss`` minus the RSS after loading,
  which is a lower bound when loading itself peaked higher). The column header says which.

bfloat16 runs the float32 weights under ``torch.autocast(device, dtype=torch.bfloat16)``.

Examples::

    .venv/bin/python benchmarks/encoder_speed.py                      # default grid
    .venv/bin/python benchmarks/encoder_speed.py --durations 10 --batches 1 --dtypes float32
    .venv/bin/python benchmarks/encoder_speed.py --device cuda --repeats 10 --json speed.json
    .venv/bin/python benchmarks/encoder_speed.py --encoder path/to/ssl_en_nest_large_v1.0.nemo
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

SAMPLE_RATE = 16000


# --------------------------------------------------------------------------- input


def speechlike_audio(batch: int, seconds: float, seed: int = 0):
    """FloatTensor [batch, seconds*16000]: voiced harmonics with a wandering pitch, syllable-rate
    amplitude modulation, pauses and a little noise; deterministic for ``seed``.

    Not speech, but with speech's spectral/temporal statistics closer than white noise (the
    encoder's cost does not depend on the content; agreement checks are nicer on it)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    n = int(round(seconds * SAMPLE_RATE))
    t = torch.arange(n, dtype=torch.float64) / SAMPLE_RATE
    out = torch.empty(batch, n)
    for b in range(batch):
        f0_base = 100.0 + 120.0 * torch.rand((), generator=g, dtype=torch.float64)
        wobble = torch.sin(
            2 * math.pi * 0.7 * t + 6.28 * torch.rand((), generator=g, dtype=torch.float64)
        )
        f0 = f0_base * (1.0 + 0.15 * wobble)
        phase = 2 * math.pi * torch.cumsum(f0, 0) / SAMPLE_RATE
        voiced = sum((0.6**k) * torch.sin(k * phase) for k in range(1, 12))
        syll = 0.5 * (
            1
            + torch.sin(
                2 * math.pi * 4.0 * t + 6.28 * torch.rand((), generator=g, dtype=torch.float64)
            )
        )
        pause = (
            torch.sin(
                2 * math.pi * 0.23 * t + 6.28 * torch.rand((), generator=g, dtype=torch.float64)
            )
            > -0.6
        )
        noise = torch.randn(n, generator=g, dtype=torch.float64)
        x = voiced * syll * pause + 0.05 * noise
        out[b] = (0.1 * x / x.abs().max()).float()
    return out


# --------------------------------------------------------------------------- machine load


def load_now() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def busy_processes(threshold: float = 10.0, seconds: float = 1.0) -> list[str]:
    """Other processes using more than ``threshold`` % of a CPU over ``seconds`` (Linux only)."""

    def sample():
        out = {}
        for d in Path("/proc").iterdir():
            if d.name.isdigit() and int(d.name) != os.getpid():
                try:
                    f = (d / "stat").read_text().rsplit(")", 1)[1].split()
                    out[d.name] = int(f[11]) + int(f[12])
                except (OSError, IndexError, ValueError):
                    pass
        return out

    try:
        a = sample()
        time.sleep(seconds)
        b = sample()
    except OSError:
        return []
    hz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, ticks in b.items():
        pct = 100.0 * (ticks - a.get(pid, ticks)) / hz / seconds
        if pct > threshold:
            try:
                cmd = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                cmd = "?"
            busy.append(f"pid {pid} {pct:.0f}% {cmd[:80]}")
    return busy


# --------------------------------------------------------------------------- memory helpers


def _proc_status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter (VmHWM) of this process; True if it worked."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    hwm, rss = _proc_status_kb("VmHWM"), _proc_status_kb("VmRSS")
    return hwm is not None and rss is not None and hwm <= rss + 1024


def _maxrss_kb() -> int:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r // 1024 if sys.platform == "darwin" else r  # bytes on macOS, KiB on Linux


# --------------------------------------------------------------------------- worker


def run_config(args: argparse.Namespace) -> dict:
    """Time and measure one (duration, batch, dtype) in this process; returns a result dict."""
    import torch

    import nestbench

    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]

    t0 = time.perf_counter()
    kwargs = {"generation": args.generation} if args.generation else {}
    encoder = nestbench.load_encoder(args.encoder, **kwargs).to(device).eval()
    load_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in encoder.parameters())

    wav = speechlike_audio(args.batch, args.duration, seed=args.seed).to(device)
    lens = torch.full((args.batch,), wav.shape[1], dtype=torch.long, device=device)
    warm_wav, warm_lens = wav, lens
    if args.warmup_seconds and args.warmup_seconds < args.duration:
        warm_wav = wav[:, : int(args.warmup_seconds * SAMPLE_RATE)].contiguous()
        warm_lens = torch.full_like(lens, warm_wav.shape[1])

    def autocast():
        if dtype == torch.float32:
            return nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward(w, n):
        with torch.inference_mode(), autocast():
            out = encoder(w, n)
        sync()
        return out

    # memory baseline: model + input loaded
    sync()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        base_bytes = torch.cuda.memory_allocated(device)
        mem_method = "cuda max_memory_allocated - allocated after load"
    else:
        base_rss_kb = _proc_status_kb("VmRSS")
        if _reset_peak_rss():
            mem_method = (
                "CPU peak RSS growth (VmHWM reset via /proc/self/clear_refs, minus RSS after load)"
            )
            use_hwm = True
        else:
            base_rss_kb = base_rss_kb or _maxrss_kb()
            mem_method = "CPU ru_maxrss minus RSS after load (lower bound if loading peaked higher)"
            use_hwm = False

    for _ in range(args.warmup):
        out = forward(warm_wav, warm_lens)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        out = forward(wav, lens)
        times.append(time.perf_counter() - t)

    if device.type == "cuda":
        peak_mb = (torch.cuda.max_memory_allocated(device) - base_bytes) / 2**20
    else:
        peak_kb = _proc_status_kb("VmHWM") if use_hwm else _maxrss_kb()
        peak_mb = max(peak_kb - base_rss_kb, 0) / 1024

    wall = statistics.median(times)
    audio_s = args.batch * wav.shape[1] / SAMPLE_RATE
    return {
        "encoder": args.encoder,
        "device": str(device),
        "duration_s": args.duration,
        "batch": args.batch,
        "dtype": args.dtype,
        "threads": torch.get_num_threads(),
        "warmup": args.warmup,
        "warmup_seconds": args.warmup_seconds if warm_wav is not wav else args.duration,
        "repeats": args.repeats,
        "wall_ms": 1000 * wall,
        "wall_ms_all": [1000 * x for x in times],
        "rtfx": audio_s / wall,
        "peak_mb": peak_mb,
        "memory_method": mem_method,
        "load_s": load_s,
        "params": n_params,
        "frames": int(out.lengths.max()),
        "out_dtype": str(out.hidden_states[-1].dtype).replace("torch.", ""),
    }


# --------------------------------------------------------------------------- driver


def _fmt_table(rows: list[dict]) -> str:
    head = ["duration_s", "batch", "dtype", "repeats", "wall_ms", "rtfx", "peak_mb"]
    lines = []
    cells = [head] + [
        [f"{r['duration_s']:g}", str(r["batch"]), r["dtype"], str(r["repeats"]),
         f"{r['wall_ms']:.1f}", f"{r['rtfx']:.1f}", f"{r['peak_mb']:.0f}"]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    for j, c in enumerate(cells):
        lines.append("| " + " | ".join(x.rjust(w) for x, w in zip(c, widths, strict=True)) + " |")
        if j == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    return name


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--encoder", default="nest-large", help="any nestbench.load_encoder spec")
    p.add_argument("--generation", choices=["2.4", "2.5"], default=None,
                   help="preprocessing generation passed to load_encoder (NEST only)")  # fmt: skip
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0], help="seconds")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                   choices=["float32", "bfloat16"])  # fmt: skip
    p.add_argument("--repeats", type=int, default=None,
                   help="timed runs per config (median taken); default 3, or 1 for configs with "
                   "more than --big-seconds of audio in the batch on the CPU")  # fmt: skip
    p.add_argument("--warmup", type=int, default=1, help="untimed runs before timing")
    p.add_argument("--big-seconds", type=float, default=120.0,
                   help="on the CPU, configs with more audio than this (batch x duration) default "
                   "to 1 repeat and warm up on --big-warmup-seconds of audio")  # fmt: skip
    p.add_argument("--big-warmup-seconds", type=float, default=10.0)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="write all results to this file")
    p.add_argument("--in-process", action="store_true",
                   help="run every config in this process (faster start; CPU peak memory then "
                   "also includes what earlier configs left allocated)")  # fmt: skip
    # internal: one config in a worker process
    p.add_argument("--_worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--duration", type=float, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dtype", help=argparse.SUPPRESS)
    p.add_argument("--warmup-seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args._worker:
        print("RESULT " + json.dumps(run_config(args)), flush=True)
        return 0

    import torch

    device = _resolve_device(args.device)
    grid = [(d, b, t) for d in args.durations for b in args.batches for t in args.dtypes]
    print(f"encoder {args.encoder} on {device}"
          f" ({torch.cuda.get_device_name() if device == 'cuda' else platform.processor() or platform.machine()}),"
          f" torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads,"
          f" {len(grid)} configs", flush=True)  # fmt: skip
    load0 = load_now()
    busy = busy_processes()
    if busy:
        print(
            "WARNING: other processes are using the CPU, timings will be noisy: " + "; ".join(busy)
        )
    rows = []
    t_start = time.perf_counter()
    for duration, batch, dtype in grid:
        big = device == "cpu" and duration * batch > args.big_seconds
        repeats = args.repeats if args.repeats is not None else (1 if big else 3)
        warm_s = args.big_warmup_seconds if big else 0.0
        wargs = ["--encoder", args.encoder, "--device", device, "--duration", str(duration),
                 "--batch", str(batch), "--dtype", dtype, "--repeats", str(repeats),
                 "--warmup", str(args.warmup), "--warmup-seconds", str(warm_s),
                 "--threads", str(args.threads), "--seed", str(args.seed)]  # fmt: skip
        if args.generation:
            wargs += ["--generation", args.generation]
        t = time.perf_counter()
        if args.in_process:
            res = run_config(p.parse_args(["--_worker", *wargs]))
        else:
            proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--_worker", *wargs],
                                  capture_output=True, text=True)  # fmt: skip
            lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
            if proc.returncode or not lines:
                print(proc.stdout, proc.stderr, file=sys.stderr)
                print(f"config {duration:g}s x {batch} {dtype} failed (exit {proc.returncode})",
                      file=sys.stderr)  # fmt: skip
                continue
            res = json.loads(lines[-1][len("RESULT ") :])
        res["config_total_s"] = time.perf_counter() - t
        rows.append(res)
        print(f"  {duration:g} s x {batch} {dtype}: {res['wall_ms']:.1f} ms, "
              f"{res['rtfx']:.1f}x real time, peak +{res['peak_mb']:.0f} MB "
              f"({res['config_total_s']:.1f} s incl. start)", flush=True)  # fmt: skip
    total = time.perf_counter() - t_start
    if rows:
        print()
        print(_fmt_table(rows))
        print(f"\nwall_ms: median forward time for the whole batch; rtfx: batch*duration/wall "
              f"(audio seconds per wall second); peak_mb: {rows[0]['memory_method']}.")  # fmt: skip
    print(f"total benchmark time {total:.1f} s; load average before/after: {load0} / {load_now()}")
    if args.json:
        meta = {"encoder": args.encoder, "device": device, "torch": torch.__version__,
                "platform": platform.platform(), "cpu_count": os.cpu_count(),
                "total_s": total, "load_before": load0, "load_after": load_now(),
                "busy_processes_before": busy}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
        print(f"wrote {args.json}")
    return 0 if len(rows) == len(grid) else 1


if __name__ == "__main__":
    sys.exit(main())
