"""How predictable NEST's masked targets are from the audio around a masked block: an oracle.

    python benchmarks/target_context.py --pool 12 --gaps 1 3 5 --classes 256 64

For clean pool audio (training utterances to fit, the eval part's test speakers to score): the
token of a step is predicted from the clean log-mel of the visible steps around a gap of
``gap`` masked 80 ms steps centred on it (two visible steps each side, each averaged over its 8
frames), by a small MLP fitted for a few epochs. Beside it: the most frequent token and copying
the nearest visible step's token. NeMo's 40-frame blocks hide about 5 steps (gap 5); a 16-frame
block hides one or two whole steps and parts of their neighbours (between gaps 1 and 3). A gap
whose oracle stays near those baselines leaves the pretraining loss little to learn from on a
short budget; that is how the recipe's block size was chosen (issue 14).
"""

from __future__ import annotations

import argparse
import json
import random

import torch
from _measure import parse_with_threads_and_json, shipped_or

from nestbench.audio import collate_audio, load_item
from nestbench.data.pool import pool_records
from nestbench.encoders.nest import load_nest
from nestbench.encoders.ssl_modules import RandomProjectionVectorQuantizer
from nestbench.pretrain.train import embedded_pool


@torch.no_grad()
def _features(model, records, batch=25):
    """Per utterance: (step means [T', 80], mel of clean audio)."""
    out = []
    for s in range(0, len(records), batch):
        wav, lens = collate_audio([load_item(r) for r in records[s : s + batch]])
        mel, mel_len, _ = model.features(wav, lens)
        for b in range(mel.shape[0]):
            n = int(mel_len[b]) // 8 * 8
            out.append(mel[b, :, :n])
    return out


def _examples(mels, quantizer, gap: int, side: int = 2):
    """(inputs [N, 2*side*80], targets [N], copied [N]) for every step whose gap of ``gap``
    masked steps (odd) and context fit inside the utterance."""
    xs, ys, cs = [], [], []
    half_steps = gap // 2  # masked steps each side of the centre
    for mel in mels:
        tok = quantizer(mel[None])[0, :, 0]  # [T']
        steps = mel.reshape(mel.shape[0], -1, 8).mean(2).T  # [T', 80]
        t_all = steps.shape[0]
        lo = half_steps + side
        for t in range(lo, t_all - lo):
            left = steps[t - half_steps - side : t - half_steps]
            right = steps[t + half_steps + 1 : t + half_steps + 1 + side]
            xs.append(torch.cat([left.flatten(), right.flatten()]))
            ys.append(int(tok[t]))
            cs.append(int(tok[t - half_steps - 1]))
    return torch.stack(xs), torch.tensor(ys), torch.tensor(cs)


def _fit(x, y, classes, epochs=6, seed=0):
    torch.manual_seed(seed)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, classes)
    )
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for s in range(0, len(x), 256):
            i = perm[s : s + 256]
            loss = torch.nn.functional.cross_entropy(net(x[i]), y[i])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="a NEST .nemo for its preprocessing")
    ap.add_argument("--corpus-size", default="default", choices=["tiny", "small", "default"])
    ap.add_argument("--pool", type=float, default=12.0, metavar="HOURS")
    ap.add_argument("--train-utts", type=int, default=600)
    ap.add_argument("--gaps", type=int, nargs="+", default=[1, 3, 5], help="masked steps (odd)")
    ap.add_argument("--classes", type=int, nargs="+", default=[256, 64])
    args = parse_with_threads_and_json(ap)
    args.model = shipped_or(args.model)
    model = load_nest(args.model).eval()
    pool = embedded_pool(args.corpus_size, args.pool)
    rng = random.Random(0)
    train = rng.sample(pool_records(pool, "train"), args.train_utts)
    test = pool_records(pool, "eval")
    mel_train, mel_test = _features(model, train), _features(model, test)
    rows = []
    for classes in args.classes:
        torch.manual_seed(1)
        q = RandomProjectionVectorQuantizer(80, 16, classes)
        for gap in args.gaps:
            xtr, ytr, _ = _examples(mel_train, q, gap)
            xte, yte, cte = _examples(mel_test, q, gap)
            mean, std = xtr.mean(0), xtr.std(0).clamp(min=1e-5)
            net = _fit((xtr - mean) / std, ytr, classes)
            with torch.no_grad():
                pred = net((xte - mean) / std).argmax(1)
            top = int(torch.bincount(ytr, minlength=classes).argmax())
            row = {
                "classes": classes,
                "gap_steps": gap,
                "test_steps": len(yte),
                "oracle": float((pred == yte).float().mean()),
                "oracle_other_targets": float((pred == yte)[yte != top].float().mean()),
                "majority": float((yte == top).float().mean()),
                "copy_nearest": float((cte == yte).float().mean()),
            }
            rows.append(row)
            print(
                f"classes {classes:>4} gap {gap} steps: oracle {100 * row['oracle']:.1f}% "
                f"(other targets {100 * row['oracle_other_targets']:.1f}%), majority "
                f"{100 * row['majority']:.1f}%, copy nearest {100 * row['copy_nearest']:.1f}%",
                flush=True,
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
