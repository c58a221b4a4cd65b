"""How well a pretrained NEST predicts masked tokens on held-out audio, against two baselines.

:func:`masked_token_accuracy` runs the model in eval mode (no dropout, no dither) on clean audio
(or augmented, ``augment=True``), masks with a fixed seed, and scores the steps the loss scores
(> ``mask_threshold`` of their frames masked). It reports

- ``accuracy``: argmax of the decoder == quantizer target, with a 95% bootstrap interval over
  utterances;
- ``chance``: ``1 / num_classes`` (a uniform guess);
- ``majority``: accuracy of always predicting the most frequent target of these very steps
  (the best constant guess, chosen with hindsight);
- ``majority_train`` (when ``reference`` records are given): accuracy of always predicting the
  token most frequent over all steps of the reference (training) audio;
- ``copy_nearest``: accuracy of copying the true token of the nearest fully visible step (no
  frame masked) of the same utterance, the simplest use of context;
- ``accuracy_majority_targets`` / ``accuracy_other_targets``: the model's accuracy on the scored
  steps whose target is / is not the majority token (how much is more than "silence").
"""

from __future__ import annotations

import numpy as np
import torch

from nestbench.audio import collate_audio, load_item
from nestbench.encoders.nest import NestModel
from nestbench.encoders.ssl_modules import scored_steps

from .augment import AugmentConfig, SpeakerNoiseAugmentation


def _batches(records: list[dict], batch_size: int):
    order = sorted(range(len(records)), key=lambda i: records[i]["duration"])
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        yield idx, collate_audio([load_item(records[i]) for i in idx])


@torch.no_grad()
def token_histogram(
    model: NestModel, records: list[dict], batch_size: int = 16, device: str = "cpu"
) -> torch.Tensor:
    """Counts of quantizer targets over every full step of ``records``: LongTensor [H, C]."""
    q = model.quantizer
    counts = torch.zeros(q.num_books, q.num_classes, dtype=torch.long)
    model = model.to(device).eval()
    for _, (wav, lens) in _batches(records, batch_size):
        mel, mel_len, _ = model.features(wav.to(device), lens.to(device))
        tokens = q(mel).cpu()  # [B, T', H]
        steps = (mel_len // q.combine_time_steps).cpu()
        valid = torch.arange(tokens.shape[1])[None, :] < steps[:, None]
        for h in range(q.num_books):
            counts[h] += torch.bincount(tokens[..., h][valid], minlength=q.num_classes)
    return counts


def nearest_visible_tokens(tokens: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """The token of the nearest visible step for every step (ties: the earlier one).

    tokens: [T, H]; visible: bool [T]. Returns [T, H]; rows are -1 where no step is visible.
    """
    t = tokens.shape[0]
    pos = torch.nonzero(visible, as_tuple=False).flatten()
    if pos.numel() == 0:
        return torch.full_like(tokens, -1)
    steps = torch.arange(t)
    right = torch.searchsorted(pos, steps).clamp(max=pos.numel() - 1)
    left = (right - 1).clamp(min=0)
    take_left = (steps - pos[left]).abs() <= (pos[right] - steps).abs()
    return tokens[torch.where(take_left, pos[left], pos[right])]


def _bootstrap(correct: np.ndarray, total: np.ndarray, n: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(correct), size=(n, len(correct)))
    acc = correct[idx].sum(1) / np.maximum(total[idx].sum(1), 1)
    return [float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))]


@torch.no_grad()
def masked_token_accuracy(
    model: NestModel,
    records: list[dict],
    batch_size: int = 8,
    seed: int = 0,
    device: str = "cpu",
    augment: bool = False,
    reference: list[dict] | None = None,
) -> dict:
    """Masked-token accuracy of ``model`` on ``records`` with chance and majority baselines
    (see the module docstring). Returns a dict of plain numbers."""
    if model.quantizer is None or model.decoder is None or model.mask_processor is None:
        raise ValueError("masked-token accuracy needs a NestModel with its pretraining parts")
    model = model.to(device).eval()
    aug = SpeakerNoiseAugmentation(AugmentConfig()) if augment else None
    cfg = model.loss_cfg
    num_classes = model.quantizer.num_classes
    per_utt_correct, per_utt_total = [], []
    scored_pairs = []  # (target [N, H], prediction [N, H], copied [N, H]) per utterance
    nll_sum, n_scored = 0.0, 0
    devices = [device] if str(device).startswith("cuda") else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        g = torch.Generator(device=device)
        g.manual_seed(seed)
        for _, (wav, lens) in _batches(records, batch_size):
            wav, lens = wav.to(device), lens.to(device)
            noisy, noisy_len = (wav, lens) if aug is None else aug(wav, lens, g)[:2]
            out = model.forward_pretrain(wav, lens, noisy, noisy_len, apply_mask=True)
            n_steps = out["log_probs"].shape[1]
            fraction, selected, tokens = (
                x.cpu() for x in scored_steps(out["masks"], out["tokens"], n_steps, **cfg)
            )
            pred = out["log_probs"].argmax(2).cpu()  # [B, T', H]
            visible = (fraction == 0) & (
                torch.arange(n_steps)[None] < out["lengths"].cpu()[:, None]
            )
            for i in range(wav.shape[0]):  # per utterance, for the bootstrap
                sel = selected[i]
                target, guess = tokens[i][sel], pred[i][sel]
                copied = nearest_visible_tokens(tokens[i], visible[i])[sel]
                scored_pairs.append((target, guess, copied))
                per_utt_correct.append(int((guess == target).sum()))
                per_utt_total.append(target.numel())
            n = sum(per_utt_total[-wav.shape[0] :])
            nll_sum += float(out["loss"]) * n
            n_scored += n
    correct, total = np.array(per_utt_correct), np.array(per_utt_total)
    scored = int(total.sum())
    if scored == 0:
        raise ValueError("no masked steps were scored: utterances too short or too few")
    # [N, H] each
    target, pred, copied = (torch.cat(parts) for parts in zip(*scored_pairs, strict=True))
    counts = torch.stack(
        [torch.bincount(target[:, h], minlength=num_classes) for h in range(target.shape[1])]
    )  # [H, C]
    result = {
        "accuracy": float(correct.sum() / scored),
        "accuracy_ci95": _bootstrap(correct, total, seed=seed),
        "chance": 1.0 / num_classes,
        "majority": float(counts.max(1).values.sum() / scored),
        "majority_token": counts.argmax(1).tolist(),
        "loss": nll_sum / max(n_scored, 1),
        "scored_steps": scored,
        "utterances": len(records),
        "distinct_targets": int((counts > 0).sum()),
        "num_classes": num_classes,
        "augmented": bool(augment),
    }
    top = counts.argmax(1)[None, :]  # [1, H]
    is_top, hits = target == top, pred == target
    result["copy_nearest"] = float((copied == target).float().mean())
    result["accuracy_majority_targets"] = float(hits[is_top].float().mean())
    result["accuracy_other_targets"] = (
        float(hits[~is_top].float().mean()) if (~is_top).any() else None
    )
    if reference:
        ref = token_histogram(model, reference, device=device)
        top = ref.argmax(1)  # [H]
        hits = sum(int(counts[h, top[h]]) for h in range(counts.shape[0]))
        result["majority_train"] = hits / scored
        result["majority_train_token"] = top.tolist()
    return result
