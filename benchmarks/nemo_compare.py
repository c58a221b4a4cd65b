#!/usr/bin/env python
"""nestbench vs NVIDIA NeMo: the NEST-L forward pass on the same weights and the same input.

Needs a Python environment holding both NeMo (``nemo_toolkit[asr]``) and nestbench, e.g.::

    python3 -m venv /work/nemo-venv
    /work/nemo-venv/bin/pip install torch==2.9.1 torchaudio==2.9.1 "nemo_toolkit[asr]==2.5.3"
    /work/nemo-venv/bin/pip install --no-deps -e .          # nestbench, from the repo root
    /work/nemo-venv/bin/python benchmarks/nemo_compare.py

What it does:

1. builds NeMo's ``AudioToMelSpectrogramPreprocessor`` and ``ConformerEncoder`` with the NEST-L
   configuration (80 mels, d_model 512, 8 heads, 18 layers, dw_striding x8 with 256 channels,
   ff x4, rel_pos with untied biases, conv kernel 9, xscaling, batch_norm), random weights with
   non-trivial ``pos_bias_u/v`` and BatchNorm running statistics;
2. builds nestbench's ``NestModel`` from the same config (encoder only), checks that its
   ``preprocessor.*``/``encoder.*`` keys and shapes equal NeMo's and those of
   ``NestModel.from_size("large")``, and loads NeMo's state dict into it strictly, so the weights
   are identical; the preprocessing generation is the one of the installed NeMo version (2.5 for
   NeMo >= 2.5: ``len // 160`` frames; 2.4 before), overridable with ``--generation``;
3. feeds both the same speech-like audio (``--durations`` x ``--batches``; in a batch the
   utterances have 100%, 90%, 75%, 60%, ... of the duration, so padding is exercised), eval mode,
   ``torch.inference_mode()``, the same ``torch.set_num_threads``;
4. checks agreement: mel features and final encoder output (max abs diff over valid frames only)
   and lengths (exact);
5. times them interleaved (warm-up, then ``--repeats`` rounds of NeMo, nestbench, ...) and reports
   medians and ``ratio = nemo_ms / nestbench_ms`` (> 1: nestbench is faster).

Timed: NeMo ``preprocessor(input_signal, length)`` + ``encoder(audio_signal, length)``, the path
``EncDecDenoiseMaskedTokenPredModel``/ASR models run; nestbench ``NestEncoder(wav, lens)``, the
Encoder contract (which also returns and zero-pads all 19 hidden states). ``--nemo-sdpa`` adds a
NeMo encoder built with ``use_pytorch_sdpa=True`` (NeMo's default is False). ``--profile`` prints
torch.profiler tables of one forward pass of each.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from encoder_speed import busy_processes, load_now, speechlike_audio  # noqa: E402

SAMPLE_RATE = 16000

PREPROCESSOR = dict(
    sample_rate=16000, normalize="per_feature", window_size=0.025, window_stride=0.01,
    window="hann", features=80, n_fft=512, log=True, frame_splicing=1, dither=1e-5,
    pad_to=16, pad_value=0.0,
)  # fmt: skip
"""NEST-L preprocessor settings (spec/NEST.md; NeMo's AudioToMelSpectrogramPreprocessor args)."""

ENCODER = dict(
    feat_in=80, feat_out=-1, n_layers=18, d_model=512, subsampling="dw_striding",
    subsampling_factor=8, subsampling_conv_channels=256, causal_downsampling=False,
    ff_expansion_factor=4, self_attention_model="rel_pos", n_heads=8, att_context_size=[-1, -1],
    xscaling=True, untie_biases=True, pos_emb_max_len=5000, conv_kernel_size=9,
    conv_norm_type="batch_norm", conv_context_size=None, dropout=0.1, dropout_pre_encoder=0.1,
    dropout_emb=0.0, dropout_att=0.1,
)  # fmt: skip
"""NEST-L encoder section (spec/NEST.md: nest_fast-conformer.yaml's large, 18 layers)."""


def quiet_nemo_import():
    import logging

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import nemo
    from nemo.collections.asr.modules import AudioToMelSpectrogramPreprocessor, ConformerEncoder
    from nemo.utils import logging as nemo_logging

    nemo_logging.setLevel(logging.ERROR)
    return nemo, AudioToMelSpectrogramPreprocessor, ConformerEncoder


class NemoPipeline(torch.nn.Module):
    """NeMo preprocessor + encoder with the NEST model's attribute names (state-dict prefixes)."""

    def __init__(self, preprocessor, encoder):
        super().__init__()
        self.preprocessor = preprocessor
        self.encoder = encoder

    def forward(self, wav, lens):
        mel, mel_len = self.preprocessor(input_signal=wav, length=lens)
        enc, enc_len = self.encoder(audio_signal=mel, length=mel_len)
        return mel, mel_len, enc, enc_len


def build_nemo(seed: int, use_sdpa: bool = False) -> NemoPipeline:
    _, Pre, Enc = quiet_nemo_import()
    torch.manual_seed(seed)
    pre = Pre(**PREPROCESSOR)
    enc = Enc(**ENCODER, use_pytorch_sdpa=use_sdpa)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # make every parameter and statistic matter
        for name, t in enc.named_parameters():
            if "pos_bias" in name:
                t.copy_(0.05 * torch.randn(t.shape, generator=g))
        for mod in enc.modules():
            if isinstance(mod, torch.nn.BatchNorm1d):
                mod.running_mean.copy_(0.1 * torch.randn(mod.running_mean.shape, generator=g))
                mod.running_var.copy_(0.5 + torch.rand(mod.running_var.shape, generator=g))
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=g))
                mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))
    return NemoPipeline(pre, enc).eval()


def build_nestbench(nemo_model: NemoPipeline, generation: str):
    """nestbench NestEncoder holding exactly NeMo's weights (strict key and shape match)."""
    from nestbench.encoders.nest import NestEncoder, NestModel

    cfg = {"preprocessor": dict(PREPROCESSOR), "encoder": dict(ENCODER)}
    model = NestModel.from_config(cfg, generation=generation, encoder_only=True)
    nemo_state = {k: v for k, v in nemo_model.state_dict().items()}
    own = model.state_dict()
    ref = {k: v for k, v in NestModel.from_size("large", generation=generation).state_dict().items()
           if k.startswith(("preprocessor.", "encoder."))}  # fmt: skip
    problems = []
    for name, a, b in (("NeMo", nemo_state, own), ("NestModel.from_size('large')", ref, own)):
        if set(a) != set(b):
            problems.append(f"{name} keys differ: only {name}: {sorted(set(a) - set(b))[:10]}, "
                            f"only nestbench: {sorted(set(b) - set(a))[:10]}")  # fmt: skip
        else:
            bad = [k for k in a if a[k].shape != b[k].shape]
            if bad:
                problems.append(f"{name} shapes differ: {bad[:10]}")
    if problems:
        raise SystemExit("state dicts do not match:\n  " + "\n  ".join(problems))
    model.load_state_dict(nemo_state, strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, nemo_state[k].to(v.dtype)), k
    return NestEncoder(model, "nest-large (NeMo weights)").eval(), len(nemo_state)


def make_batch(batch: int, seconds: float, seed: int):
    wav = speechlike_audio(batch, seconds, seed=seed)
    fracs = [1.0, 0.9, 0.75, 0.6, 0.5, 0.4, 0.3, 0.2]
    lens = torch.tensor([int(wav.shape[1] * fracs[i % len(fracs)]) for i in range(batch)])
    wav = wav * (torch.arange(wav.shape[1])[None, :] < lens[:, None])  # zero padding
    return wav.contiguous(), lens


def valid_max_diff(a: torch.Tensor, b: torch.Tensor, lengths: torch.Tensor) -> float:
    """a, b: [B, T, D]; max |a - b| over t < lengths[b]."""
    m = (torch.arange(a.shape[1])[None, :] < lengths[:, None])[..., None]
    return float(((a.float() - b.float()).abs() * m).max())


class NoPacking:
    """nestbench with its blocks computing the padded steps too (``PACK_PADDING`` off), as
    before the blocks learnt to skip them: the before of ``--no-packing``."""

    def __init__(self, encoder):
        self.encoder = encoder

    def __call__(self, wav, lens):
        from nestbench.encoders import fastconformer

        fastconformer.PACK_PADDING = False
        try:
            return self.encoder(wav, lens)
        finally:
            fastconformer.PACK_PADDING = True


def run_case(impls: dict, batch: int, seconds: float, args) -> dict:
    wav, lens = make_batch(batch, seconds, args.seed)
    nemo_model, nb = impls["nemo"], impls["nestbench"]

    with torch.inference_mode():
        mel, mel_len, enc, enc_len = nemo_model(wav, lens)
        out = nb(wav, lens)
        nb_mel, nb_mel_len = nb.model.preprocessor(wav, lens)
    nemo_hidden = enc.transpose(1, 2)
    agree = {
        "mel_len_equal": bool(torch.equal(mel_len.cpu(), nb_mel_len.cpu())),
        "enc_len_equal": bool(torch.equal(enc_len.cpu(), out.lengths.cpu())),
        "shape_equal": tuple(nemo_hidden.shape) == tuple(out.hidden_states[-1].shape),
        "mel_max_abs_diff": valid_max_diff(mel.transpose(1, 2), nb_mel.transpose(1, 2), mel_len),
        "enc_max_abs_diff": valid_max_diff(nemo_hidden, out.hidden_states[-1], enc_len),
        "enc_max_abs": float(nemo_hidden.abs().max()),
    }

    calls = {name: (lambda m=m: m(wav, lens)) for name, m in impls.items()}
    times = {name: [] for name in impls}
    names = list(impls)
    with torch.inference_mode():
        for _ in range(args.warmup):
            for name in names:
                calls[name]()
        for r in range(args.repeats):
            # alternate the order every round (ABBA) so drifts in machine speed cancel
            for name in names if r % 2 == 0 else names[::-1]:
                t = time.perf_counter()
                calls[name]()
                times[name].append(1000 * (time.perf_counter() - t))
    med = {name: statistics.median(v) for name, v in times.items()}
    best = {name: min(v) for name, v in times.items()}
    nb_t = times["nestbench"]
    row = {"duration_s": seconds, "batch": batch, "lengths": lens.tolist(),
           "audio_s": float(lens.sum()) / SAMPLE_RATE, "repeats": args.repeats,
           "median_ms": med, "min_ms": best, "all_ms": times,
           "ratio": med["nemo"] / med["nestbench"],
           "ratio_min": best["nemo"] / best["nestbench"],
           "ratio_paired": statistics.median(a / b for a, b in zip(times["nemo"], nb_t, strict=True)),
           **agree}  # fmt: skip
    if "nestbench_nopack" in med:  # nestbench computing the padding too (before packing)
        row["ratio_nopack"] = med["nemo"] / med["nestbench_nopack"]
        row["ratio_nopack_paired"] = statistics.median(
            a / b for a, b in zip(times["nemo"], times["nestbench_nopack"], strict=True)
        )
    if "nemo_sdpa" in med:
        row["ratio_sdpa"] = med["nemo_sdpa"] / med["nestbench"]
        row["ratio_sdpa_paired"] = statistics.median(
            a / b for a, b in zip(times["nemo_sdpa"], nb_t, strict=True)
        )

    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        for name in impls:
            with torch.inference_mode(), profile(activities=[ProfilerActivity.CPU]) as prof:
                calls[name]()
            print(f"\n--- torch.profiler: {name}, {seconds:g} s x {batch} ---")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile))
    return row


def table(rows: list[dict], sdpa: bool) -> str:
    head = ["duration_s", "batch", "nemo_ms", "nestbench_ms", "ratio", "ratio_paired", "ratio_min"]
    nopack = any("ratio_nopack" in r for r in rows)
    if sdpa:
        head[3:3] = ["nemo_sdpa_ms"]
        head.append("ratio_sdpa")
    if nopack:
        head += ["nopack_ms", "ratio_nopack", "nestbench/nemo", "nopack/nemo"]
    head += ["enc_max_abs_diff", "mel_max_abs_diff", "lengths_equal"]
    cells = [head]
    for r in rows:
        m = r["median_ms"]
        c = [f"{r['duration_s']:g}", str(r["batch"]), f"{m['nemo']:.1f}"]
        if sdpa:
            c.append(f"{m['nemo_sdpa']:.1f}")
        c += [f"{m['nestbench']:.1f}", f"{r['ratio']:.3f}", f"{r['ratio_paired']:.3f}",
              f"{r['ratio_min']:.3f}"]  # fmt: skip
        if sdpa:
            c.append(f"{r['ratio_sdpa']:.3f}")
        if nopack:
            c += [f"{m['nestbench_nopack']:.1f}", f"{r['ratio_nopack']:.3f}",
                  f"{m['nestbench'] / m['nemo']:.3f}", f"{m['nestbench_nopack'] / m['nemo']:.3f}"]  # fmt: skip
        c += [f"{r['enc_max_abs_diff']:.2e}", f"{r['mel_max_abs_diff']:.2e}",
              str(r["mel_len_equal"] and r["enc_len_equal"] and r["shape_equal"])]  # fmt: skip
        cells.append(c)
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = []
    for j, c in enumerate(cells):
        lines.append("| " + " | ".join(x.rjust(w) for x, w in zip(c, widths, strict=True)) + " |")
        if j == 0:
            lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--durations", type=float, nargs="+", default=[10.0, 60.0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--repeats", type=int, default=5, help="interleaved timed rounds (median)")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: default)")
    p.add_argument("--generation", choices=["2.4", "2.5"], default=None,
                   help="nestbench preprocessing generation (default: from NeMo's version)")  # fmt: skip
    p.add_argument(
        "--no-packing",
        action="store_true",
        help="also time nestbench computing the padding too (before/after packing)",
    )
    p.add_argument("--nemo-sdpa", action="store_true",
                   help="also time NeMo's encoder with use_pytorch_sdpa=True")  # fmt: skip
    p.add_argument("--profile", type=int, default=0, metavar="N",
                   help="print the top N ops of one profiled forward of each implementation")  # fmt: skip
    p.add_argument("--tolerance", type=float, default=1e-3,
                   help="fail (exit 1) if the encoder outputs differ by more on valid frames")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    nemo, _, _ = quiet_nemo_import()
    from nestbench.encoders.preprocessor import generation_for_version

    generation = args.generation or generation_for_version(nemo.__version__)
    nemo_model = build_nemo(args.seed)
    nb, n_keys = build_nestbench(nemo_model, generation)
    impls = {"nemo": nemo_model}
    if args.nemo_sdpa:
        sdpa = build_nemo(args.seed, use_sdpa=True)
        sdpa.load_state_dict(copy.deepcopy(nemo_model.state_dict()), strict=True)
        impls["nemo_sdpa"] = sdpa.eval()
    impls["nestbench"] = nb
    if args.no_packing:
        impls["nestbench_nopack"] = NoPacking(nb)
    n_params = sum(p.numel() for p in nemo_model.encoder.parameters())
    print(f"NeMo {nemo.__version__} (nestbench generation {generation}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads; NEST-L encoder {n_params:,} parameters; "
          f"{n_keys} preprocessor/encoder tensors copied NeMo -> nestbench (strict)", flush=True)  # fmt: skip

    load0 = load_now()
    busy = busy_processes()
    if busy:
        print(
            "WARNING: other processes are using the CPU, timings will be noisy: " + "; ".join(busy)
        )
    rows = []
    t0 = time.perf_counter()
    for seconds in args.durations:
        for batch in args.batches:
            r = run_case(impls, batch, seconds, args)
            rows.append(r)
            m = r["median_ms"]
            print(f"  {seconds:g} s x {batch}: " + ", ".join(f"{k} {v:.1f} ms" for k, v in m.items())
                  + f", ratio {r['ratio']:.3f}, enc max|diff| {r['enc_max_abs_diff']:.2e}",
                  flush=True)  # fmt: skip
    print()
    print(table(rows, args.nemo_sdpa))
    print(f"\nratio = NeMo median ms / nestbench median ms over {args.repeats} interleaved rounds "
          f"(> 1: nestbench faster); ratio_paired = median over rounds of NeMo ms / nestbench ms "
          f"of the same round; ratio_min = fastest NeMo / fastest nestbench. Diffs: "
          f"max |NeMo - nestbench| over valid frames "
          f"(encoder output |max| ~ {max(r['enc_max_abs'] for r in rows):.1f}).")  # fmt: skip
    print(f"load average before/after: {load0} / {load_now()}")
    print(f"total {time.perf_counter() - t0:.1f} s")
    if args.json:
        meta = {"nemo": nemo.__version__, "torch": torch.__version__, "generation": generation,
                "threads": torch.get_num_threads(), "encoder_params": n_params}  # fmt: skip
        args.json.write_text(json.dumps({"meta": meta, "results": rows}, indent=2))
        print(f"wrote {args.json}")
    ok = all(r["enc_max_abs_diff"] <= args.tolerance and r["mel_len_equal"] and r["enc_len_equal"]
             for r in rows)  # fmt: skip
    if not ok:
        print(f"MISMATCH: outputs differ by more than {args.tolerance} or lengths differ",
              file=sys.stderr)  # fmt: skip
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
