"""Masked-token accuracy of a pretrained NEST on held-out embedded audio, against chance and
against always predicting the most frequent token.

    python benchmarks/pretrained_eval.py                      # the shipped nest-embedded
    python benchmarks/pretrained_eval.py --model runs/pretrain/embedded/last.nemo \
        --splits test --json results.json

Held-out audio: the ``dev`` and/or ``test`` splits of the embedded corpus's asr, sv, slu and diar
datasets (long diarization sessions cut into chunks as in pretraining). The model runs in eval
mode on clean audio, masked with a fixed seed; the steps scored are those the pretraining loss
scores. Printed: accuracy (95% bootstrap interval over utterances), chance (1/classes), the
majority baseline (the most frequent target of the scored steps, chosen with hindsight), the
majority token of the training audio (``--reference-utts`` training utterances), copying the
true token of the nearest unmasked step, and the accuracy split into steps whose target is the
majority token and the rest. ``--random``
adds the same architecture with random weights (``nest-embedded-random``) for comparison.
``--block-size`` / ``--mask-prob`` score every model under other masking than the model's own
(to compare models pretrained with different blocks on the same steps).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from _measure import model_and_audio_arguments

from nestbench.data.pool import pool_manifest
from nestbench.encoders.nest import load_nest
from nestbench.pretrain.data import load_records
from nestbench.pretrain.evaluate import masked_token_accuracy
from nestbench.pretrain.train import embedded_manifests, embedded_pool


def _records(size: str, splits: list[str], max_duration: float) -> list[dict]:
    manifests = [m for split in splits for m in embedded_manifests(size, split)]
    return load_records(manifests, min_duration=1.0, max_duration=max_duration)


def _random_twin(model, seed: int):
    from nestbench.encoders.nest import NestModel

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return NestModel.from_config(model.config)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    model_and_audio_arguments(ap)
    ap.add_argument("--splits", nargs="+", default=["dev", "test"], choices=["dev", "test"])
    ap.add_argument("--max-utts", type=int, default=None, help="score a random subset")
    ap.add_argument("--max-duration", type=float, default=8.0, help="chunk length, seconds")
    ap.add_argument("--reference-utts", type=int, default=1000, help="training utterances")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random", action="store_true", help="also the random-init twin")
    ap.add_argument("--augment", action="store_true", help="augmented input, as in training")
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--block-size",
        type=int,
        default=None,
        help="mask blocks of N frames (default: the model's)",
    )
    ap.add_argument(
        "--mask-prob",
        type=float,
        default=None,
        help="block start probability (default: the model's)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()

    if args.model is None:
        from nestbench.weights import weights_path

        args.model = str(weights_path())
    model = load_nest(args.model)
    if args.pool:
        pool = embedded_pool(args.corpus_size, args.pool)
        held_out, train = (
            load_records([pool_manifest(pool, part)], 1.0, args.max_duration)
            for part in ("eval", "train")
        )
        args.splits = ["clean pool eval (test speakers)"]
    else:
        held_out = _records(args.corpus_size, args.splits, args.max_duration)
        train = _records(args.corpus_size, ["train"], args.max_duration)
    if args.max_utts and len(held_out) > args.max_utts:
        held_out = random.Random(args.seed).sample(held_out, args.max_utts)
    reference = random.Random(args.seed).sample(train, min(args.reference_utts, len(train)))
    models = {"pretrained": model}
    if args.random:
        models["random init"] = _random_twin(model, args.seed)
    for m in models.values():  # score every model under the same masking
        if args.block_size is not None:
            m.mask_processor.block_size = args.block_size
        if args.mask_prob is not None:
            m.mask_processor.mask_prob = args.mask_prob
    masking = models["pretrained"].mask_processor
    results = {}
    for name, m in models.items():
        t = time.perf_counter()
        results[name] = masked_token_accuracy(
            m,
            held_out,
            batch_size=args.batch_size,
            seed=args.seed,
            device=args.device,
            augment=args.augment,
            reference=reference,
        )
        results[name]["seconds"] = round(time.perf_counter() - t, 1)
    first = next(iter(results.values()))
    print(
        f"{args.model}: {len(held_out)} held-out segments ({', '.join(args.splits)}), "
        f"{first['scored_steps']} scored steps, {first['num_classes']} classes, "
        f"blocks of {masking.block_size} frames at p {masking.mask_prob:g}"
    )
    for name, r in results.items():
        lo, hi = r["accuracy_ci95"]
        print(
            f"  {name:<12} masked-token accuracy {100 * r['accuracy']:.2f}% "
            f"[{100 * lo:.2f}, {100 * hi:.2f}]  loss {r['loss']:.3f}"
        )
    for name, r in results.items():
        print(
            f"  {name:<12} on majority-token targets {100 * r['accuracy_majority_targets']:.2f}%, "
            f"on the other targets {100 * r['accuracy_other_targets']:.2f}%"
        )
    print(f"  chance (1/{first['num_classes']})          {100 * first['chance']:.3f}%")
    print(f"  copy the nearest visible token {100 * first['copy_nearest']:.2f}%")
    print(f"  most frequent token (held-out) {100 * first['majority']:.2f}%")
    print(f"  most frequent token (train)    {100 * first['majority_train']:.2f}%")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "model": args.model,
                    "splits": args.splits,
                    "masking": {"block_size": masking.block_size, "mask_prob": masking.mask_prob},
                    **results,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
