"""How predictable NEST's masked-token targets are on the embedded corpus: a ceiling check.

    python benchmarks/target_stability.py                  # 200 dev segments, the shipped model
    python benchmarks/target_stability.py --classes 2048 256 32 --json stability.json

The random-projection quantizer hashes 8 stacked, per-feature-normalised mel frames (80 ms) into
one of C classes. This script measures, on clean held-out audio (eval mode):

- how many targets survive tiny changes of the audio: training-time dither (1e-5) and white
  noise added at 40 / 30 / 20 dB SNR (fraction of steps whose token is unchanged);
- for fresh quantizers with C classes (same 80 x 8 -> 16 projection shape, seeded): the target
  entropy, the most frequent token's share, how often two consecutive steps carry the same token,
  and how many tokens survive 30 dB noise.

Targets that flip under noise far below the corpus's own noise floor, and that change from one
80 ms step to the next, are hard to predict from context; that bounds what a small, briefly
pretrained model can reach.
"""

from __future__ import annotations

import argparse
import json
import math
import random

import torch
from _measure import model_and_audio_arguments, parse_with_threads_and_json, shipped_or

from nestbench.audio import collate_audio, load_item
from nestbench.data.pool import pool_manifest
from nestbench.encoders.nest import load_nest
from nestbench.encoders.ssl_modules import RandomProjectionVectorQuantizer
from nestbench.pretrain.data import load_records
from nestbench.pretrain.train import embedded_manifests, embedded_pool


def _add_noise(wav: torch.Tensor, lens: torch.Tensor, snr_db: float, g: torch.Generator):
    """wav [B, S] + white noise at ``snr_db`` relative to each row's mean power."""
    power = wav.pow(2).sum(1, keepdim=True) / lens[:, None]
    noise = torch.randn(wav.shape, generator=g) * torch.sqrt(power / 10 ** (snr_db / 10))
    valid = torch.arange(wav.shape[1])[None, :] < lens[:, None]
    return wav + noise * valid


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_and_audio_arguments(ap)
    ap.add_argument("--split", default="dev", choices=["dev", "test"])
    ap.add_argument("--segments", type=int, default=200)
    ap.add_argument("--classes", type=int, nargs="+", default=[2048, 512, 128, 32])
    ap.add_argument("--seed", type=int, default=0)
    args = parse_with_threads_and_json(ap)
    args.model = shipped_or(args.model)
    model = load_nest(args.model).eval()
    manifests = (
        [pool_manifest(embedded_pool(args.corpus_size, args.pool), "eval")]
        if args.pool
        else embedded_manifests(args.corpus_size, args.split)
    )
    records = load_records(manifests, min_duration=1.0, max_duration=8.0)
    records = random.Random(args.seed).sample(records, min(args.segments, len(records)))
    wav, lens = collate_audio([load_item(r) for r in records])
    g = torch.Generator().manual_seed(args.seed)
    k = model.quantizer.combine_time_steps
    split = f"clean pool eval ({args.pool:g} h pool)" if args.pool else args.split
    out: dict = {"model": args.model, "segments": len(records), "split": split}
    with torch.no_grad():
        mel, mel_len, _ = model.features(wav, lens)
        valid = torch.arange(mel.shape[2] // k)[None, :] < (mel_len // k)[:, None]  # [B, T']

        def tokens(feats, quantizer=model.quantizer):
            return quantizer(feats)[..., 0]  # [B, T']

        clean = tokens(mel)
        model.preprocessor.train()  # dither on
        torch.manual_seed(args.seed)
        dithered = tokens(model.features(wav, lens)[0])
        model.preprocessor.eval()
        out["unchanged_by_dither"] = float((dithered == clean)[valid].float().mean())
        noisy_mel = {
            snr: model.features(_add_noise(wav, lens, snr, g), lens)[0] for snr in (40, 30, 20)
        }
        for snr, feats in noisy_mel.items():
            out[f"unchanged_at_{snr}dB"] = float((tokens(feats) == clean)[valid].float().mean())
        rows = []
        for c in args.classes:
            torch.manual_seed(args.seed + 1)
            q = RandomProjectionVectorQuantizer(mel.shape[1], model.quantizer.code_dim, c)
            t = tokens(mel, q)
            p = torch.bincount(t[valid], minlength=c).double()
            p = p[p > 0] / p.sum()
            rows.append(
                {
                    "classes": c,
                    "entropy_nats": float(-(p * p.log()).sum()),
                    "max_entropy_nats": math.log(c),
                    "majority_share": float(p.max()),
                    "consecutive_same": float((t[:, 1:] == t[:, :-1])[valid[:, 1:]].float().mean()),
                    "unchanged_at_30dB": float(
                        (tokens(noisy_mel[30], q) == t)[valid].float().mean()
                    ),
                }
            )
        out["by_classes"] = rows
    print(f"{args.model}: {len(records)} {split} segments, {int(valid.sum())} steps")
    print(f"  targets unchanged by dither 1e-5: {100 * out['unchanged_by_dither']:.1f}%")
    for snr in (40, 30, 20):
        print(
            f"  targets unchanged by white noise at {snr} dB: {100 * out[f'unchanged_at_{snr}dB']:.1f}%"
        )
    print("  classes  entropy (max)   majority  consecutive-same  unchanged at 30 dB")
    for r in rows:
        print(
            f"  {r['classes']:>7}  {r['entropy_nats']:.2f} ({r['max_entropy_nats']:.2f})"
            f"     {100 * r['majority_share']:5.1f}%    {100 * r['consecutive_same']:5.1f}%"
            f"           {100 * r['unchanged_at_30dB']:5.1f}%"
        )
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
