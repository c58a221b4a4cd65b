"""Where speaker information lives in an encoder: a training-free probe of every layer.

    python benchmarks/layer_probe.py                                  # nest-embedded, its random
                                                                      # twin and fbank
    python benchmarks/layer_probe.py --encoders runs/pretrain/embedded/last.nemo fbank \
        --json probe.json

For each encoder and each of its layers (hidden state 0 = the input to the first block): the
mean and standard deviation over the frames of each utterance (``tasks.sv.probe.pool_stats``;
frames shorter than 80 ms are first averaged to 80 ms, so ``fbank`` is pooled as NEST's frames
are), linear discriminant analysis fitted on the SV training speakers of the embedded corpus
(``tasks.sv.probe.fit_probe``, cross-validated shrinkage), cosine scoring of the SV test trials
(2,000 at size ``default``). Printed: the EER of each layer, with a 95% bootstrap interval over
trials for each encoder's best layer. Nothing is trained beyond the LDA; no dev or test audio is
fitted on.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from _measure import parse_with_threads_and_json
from nestbench.tasks.sv.probe import fit_probe, pool_stats

from nestbench.audio import collate_audio, load_item
from nestbench.data.embedded import ensure_embedded_corpus
from nestbench.data.layout import manifest_path, trials_path
from nestbench.data.manifest import read_manifest
from nestbench.data.trials import TrialResolver, read_trials
from nestbench.encoders import load_encoder
from nestbench.layers import frame_pool
from nestbench.metrics.sv import bootstrap_eer, cosine_scores, eer

TARGET_FRAME = 1280  # samples: pool finer frames to 80 ms


@torch.no_grad()
def layer_stats(encoder, records: list[dict], batch_size: int = 16) -> list[np.ndarray]:
    """Per layer, [N, 2D] mean + std of each record's frames (80 ms or coarser)."""
    order = sorted(range(len(records)), key=lambda i: records[i]["duration"])
    factor = max(1, round(TARGET_FRAME / max(int(encoder.frame_shift), 1)))
    out: list[list[tuple[int, np.ndarray]]] = []
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        wav, lens = collate_audio([load_item(records[i]) for i in idx])
        res = encoder(wav, lens)
        for k, h in enumerate(res.hidden_states):
            x, n = frame_pool(h.float(), res.lengths, factor)
            if len(out) <= k:
                out.append([])
            stats = pool_stats(x, n).numpy()
            out[k] += list(zip(idx, stats, strict=True))
    return [np.stack([v for _, v in sorted(rows, key=lambda r: r[0])]) for rows in out]


def probe(encoder_spec: str, size: str, seed: int = 0) -> dict:
    root = ensure_embedded_corpus(size)
    train = list(read_manifest(manifest_path(root, "sv", "train")))
    test = list(read_manifest(manifest_path(root, "sv", "test")))
    resolver = TrialResolver([r["audio_filepath"] for r in test])
    index = {r["audio_filepath"]: i for i, r in enumerate(test)}
    trials = read_trials(trials_path(root, "sv", "test"))
    pairs = np.array(
        [(index[resolver.resolve(t.enroll)[0]], index[resolver.resolve(t.test)[0]]) for t in trials]
    )
    labels = np.array([t.label for t in trials])
    encoder = load_encoder(encoder_spec).eval()
    t0 = time.perf_counter()
    train_stats = layer_stats(encoder, train)
    test_stats = layer_stats(encoder, test)
    seconds = time.perf_counter() - t0
    speakers = [r["label"] for r in train]
    layers = []
    for k, (tr, te) in enumerate(zip(train_stats, test_stats, strict=True)):
        p = fit_probe(tr, speakers)
        z = p.transform(te)
        scores = cosine_scores(z[pairs[:, 0]], z[pairs[:, 1]])
        layers.append({"layer": k, "eer": float(eer(scores, labels)), "scores": scores})
    best = min(layers, key=lambda r: r["eer"])
    ci = bootstrap_eer(best["scores"], labels, seed=seed)
    return {
        "encoder": encoder_spec,
        "frame_shift": int(encoder.frame_shift),
        "extract_seconds": round(seconds, 1),
        "trials": len(trials),
        "layers": [{"layer": r["layer"], "eer": r["eer"]} for r in layers],
        "best_layer": best["layer"],
        "best_eer": best["eer"],
        "best_eer_ci95": [float(ci[0]), float(ci[1])],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--encoders", nargs="+", default=["nest-embedded", "nest-embedded-random", "fbank"]
    )
    ap.add_argument("--corpus-size", default="default", choices=["tiny", "small", "default"])
    args = parse_with_threads_and_json(ap)
    results = []
    for spec in args.encoders:
        r = probe(spec, args.corpus_size)
        results.append(r)
        per_layer = "  ".join(f"{x['layer']}:{100 * x['eer']:.1f}" for x in r["layers"])
        lo, hi = r["best_eer_ci95"]
        print(
            f"{spec}: EER % by layer  {per_layer}\n"
            f"  best layer {r['best_layer']}: {100 * r['best_eer']:.1f} "
            f"[{100 * lo:.1f}, {100 * hi:.1f}] ({r['trials']} trials, features "
            f"{r['extract_seconds']} s)",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
