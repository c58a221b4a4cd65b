"""What beam search costs and gives over greedy CTC decoding, on a finished frozen ASR run.

    .venv/bin/python benchmarks/asr_decoding.py RUN_DIR [--beam-sizes 10 50] [--split test]

Loads the run's config, units (``units.model``) and best checkpoint, takes the split's cached
features (the run's feature cache), and decodes the same log-probabilities four ways: greedy;
lexicon-free beam search (flashlight through torchaudio, no language model) per beam size; and
beam search with a lexicon of the training words and a word bigram KenLM written here from the
training transcripts (ARPA, absolute discounting with backoff to unigrams). Prints WER/CER and
the decoding time of each, as ratios against greedy.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from nestbench.tasks.asr.decode import BeamDecoder, greedy, write_lexicon
from nestbench.tasks.asr.units import Units
from omegaconf import OmegaConf

from nestbench.cache import FeatureCache, default_cache_root
from nestbench.encoders import load_encoder
from nestbench.featurizer import Featurizer
from nestbench.metrics.asr import wer_cer
from nestbench.runner import check_layers, chunking
from nestbench.task import EncoderInfo, get_task


def write_bigram_arpa(path: Path, sentences: list[str], discount: float = 0.5) -> Path:
    """A word bigram ARPA model with absolute discounting and backoff to unigrams."""
    uni, bi = Counter(), Counter()
    for s in sentences:
        words = ["<s>", *s.split(), "</s>"]
        uni.update(words)
        bi.update(zip(words, words[1:], strict=False))
    total = sum(c for w, c in uni.items() if w != "<s>")
    vocab = sorted(uni)
    followers = Counter(a for a, _ in bi)
    lines = ["\\data\\", f"ngram 1={len(vocab) + 1}", f"ngram 2={len(bi)}", "", "\\1-grams:"]
    lines.append(f"{math.log10(0.5 / total):.6f}\t<unk>\t0")
    for w in vocab:
        p = -99.0 if w == "<s>" else math.log10(uni[w] / total)
        backoff = discount * followers[w] / max(1, uni[w]) if followers[w] else 1.0
        lines.append(f"{p:.6f}\t{w}\t{math.log10(max(backoff, 1e-6)):.6f}")
    lines += ["", "\\2-grams:"]
    for (a, b), c in sorted(bi.items()):
        lines.append(f"{math.log10(max(c - discount, 1e-3) / uni[a]):.6f}\t{a} {b}")
    lines += ["", "\\end\\", ""]
    path.write_text("\n".join(lines))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--split", default="test")
    ap.add_argument("--beam-sizes", nargs="+", type=int, default=[10, 50])
    args = ap.parse_args()
    cfg = OmegaConf.load(args.run_dir / "config.yaml")
    encoder = load_encoder(cfg.encoder.spec, **OmegaConf.to_container(cfg.encoder.kwargs))
    layers = check_layers(cfg, encoder)
    info = EncoderInfo.of(encoder, None if layers is None else len(layers))
    task = get_task("asr")(cfg)
    work = args.run_dir / "decoding"
    work.mkdir(exist_ok=True)
    task.setup(info, work)
    from nestbench.data.embedded import ensure_embedded_corpus

    splits = task.load(Path(cfg.data) if cfg.data else ensure_embedded_corpus(cfg.data_size))
    task.units = Units(args.run_dir / "units.model")  # the run's own units
    examples = task.examples(args.split, splits[args.split])
    state = torch.load(args.run_dir / "checkpoints" / "best.ckpt", map_location="cpu")["state_dict"]
    featurizer = Featurizer(
        info.num_inputs, info.hidden_size, cfg.featurizer.layer, cfg.featurizer.layer_norm
    )
    head = task.build_head(info)
    featurizer.load_state_dict({k[11:]: v for k, v in state.items() if k.startswith("featurizer.")})
    head.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("head.")})
    featurizer.eval(), head.eval()
    root = Path(cfg.cache.root) if cfg.cache.root else default_cache_root() / "features"
    cache = FeatureCache(
        root, encoder.identity(), layers, {"sample_rate": encoder.sample_rate}, chunking(cfg)
    )
    cache.build(examples, encoder, progress=False)
    log_probs = []
    with torch.no_grad():
        for ex in examples:
            x = torch.from_numpy(np.asarray(cache.load(ex), dtype=np.float32))[:, None]
            lp, n = head(featurizer(x), torch.tensor([x.shape[2]]))
            log_probs.append((lp, n))
    refs = [ex["_ref"] for ex in examples]
    lm = write_bigram_arpa(work / "bigram.arpa", task.train_refs)
    lexicon = write_lexicon(
        work / "lexicon.txt", {w for r in task.train_refs for w in r.split()}, task.units.spell
    )
    decoders = {"greedy": greedy}
    for b in args.beam_sizes:
        decoders[f"beam {b}"] = BeamDecoder(task.units.pieces(), beam_size=b)
    for b in args.beam_sizes:
        decoders[f"beam {b} + lexicon + bigram LM"] = BeamDecoder(
            task.units.pieces(), beam_size=b, lm=lm, lexicon=lexicon
        )
    base = None
    for name, decode in decoders.items():
        t = time.perf_counter()
        hyps = [task.units.decode(decode(lp, n)[0]) for lp, n in log_probs]
        secs = time.perf_counter() - t
        base = base or secs
        m = wer_cer(refs, hyps, n_resamples=0)
        print(
            f"{name:>34}: WER {m['wer'].value:6.2f}  CER {m['cer'].value:6.2f}  "
            f"{secs:7.2f} s ({secs / base:6.1f} x greedy) for {len(examples)} utterances",
            flush=True,
        )


if __name__ == "__main__":
    main()
