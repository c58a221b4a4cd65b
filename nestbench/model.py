"""The downstream model: (encoder) -> featurizer -> task head, as one LightningModule.

Frozen mode: the encoder is absent (features come from the cache) or kept in eval mode without
gradients. Fine-tune mode: the encoder trains with its own learning rate, optionally frozen for the
first ``freeze_encoder_steps`` steps. The featurizer's layer weights train in both modes, at
``optim.layer_weights_lr_scale`` times the head's learning rate and without weight decay.

Prediction has one path for dev and every eval split: Lightning's validation loop. The model
predicts the examples of ``eval_split`` (batches carry each example's ``index``), gathers the
outputs of every DDP rank, puts them in example order and hands them to ``task.evaluate``. During
``fit`` that split is the dev split (its metrics select the best epoch); afterwards the runner
sets each eval split in turn and calls ``trainer.validate``. A task with
``init_head_from_train`` gets the untrained model's outputs on the training examples the same way,
before ``fit``, in ``task.init_head``.
"""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import lightning as L
import torch
from torch import nn

from nestbench.encoders import windowed
from nestbench.encoders.windowed import Chunking
from nestbench.featurizer import Featurizer
from nestbench.metrics.base import Score, as_score_dict
from nestbench.metrics.paired import items_file, write_items


class DownstreamModel(L.LightningModule):
    """Args:
    task: the Task.
    featurizer: combines the hidden states.
    head: the task head (built by ``task.build_head``).
    encoder: the encoder, or None when every batch carries cached features.
    mode: "frozen" or "finetune".
    optim: the run config's ``optim`` section.
    eval_examples: split -> the examples predicted when that split is evaluated (the order of
        the ``index`` field of the validation batches).
    cache_layers: hidden-state indices the featurizer takes when the encoder runs live (the
        cached layer selection), None for all.
    out_dir: where eval splits (not dev) write their predictions and per-item metric
        components (``<split>_items.json``; global rank 0 only).
    """

    def __init__(
        self,
        task,
        featurizer: Featurizer,
        head: nn.Module,
        encoder: nn.Module | None,
        mode: str,
        optim,
        eval_examples: dict[str, list[dict]],
        cache_layers: list[int] | None = None,
        out_dir: Path | None = None,
        chunking: Chunking | None = None,
    ):
        super().__init__()
        self.task, self.featurizer, self.head, self.encoder = task, featurizer, head, encoder
        self.mode, self.optim = mode, optim
        self.eval_examples = eval_examples
        self.cache_layers = cache_layers
        self.out_dir = out_dir
        self.chunking = chunking
        self.eval_split = task.dev_split
        self.dev_history: list[dict] = []
        #: set by the runner for the dev pass after training: the task tunes on its outputs
        self.tuning = False
        self.tuned: dict = {}
        self.split_metrics: dict[str, dict[str, dict]] = {}
        #: artifact name -> file (relative to out_dir) of the per-item files written
        self.item_files: dict[str, str] = {}
        self._outputs: dict[int, object] = {}

    # Keep a frozen encoder in eval mode whatever Lightning asks (no dropout, fixed BatchNorm).
    def train(self, mode: bool = True):
        super().train(mode)
        if self.encoder is not None and self.mode == "frozen":
            self.encoder.eval()
        return self

    def _encoder_trains(self) -> bool:
        return (
            self.mode == "finetune"
            and self.training
            and self.global_step >= self.optim.freeze_encoder_steps
        )

    def features(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """The featurizer output [B, T, D] and lengths [B] of a batch."""
        if "feats" in batch:
            return self.featurizer(batch["feats"].transpose(0, 1)), batch["lengths"]
        grad = self._encoder_trains()
        if self.mode == "finetune" and self.encoder.training != grad:
            self.encoder.train(grad)  # eval (no dropout, fixed BatchNorm) while it is frozen
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        with ctx:
            out = windowed.forward(
                self.encoder,
                batch["wav"],
                batch["wav_lens"],
                self.chunking,
                int(self.encoder.sample_rate),
            )
        if bool((out.lengths < 1).any()):
            self._no_frames(batch, out.lengths)
        states = out.hidden_states
        if self.cache_layers is not None:
            states = tuple(states[i] for i in self.cache_layers)
        return self.featurizer(states), out.lengths

    def _no_frames(self, batch: dict, lengths: torch.Tensor):
        """AudioError naming the examples of ``batch`` that gave the encoder no frame."""
        from nestbench.audio import AudioError

        split = "train" if self.training else self.eval_split
        examples = self.eval_examples.get(split, [])
        bad = [int(i) for i, n in zip(batch["index"], lengths.tolist(), strict=True) if n < 1]
        names = [examples[i]["audio_filepath"] if i < len(examples) else f"#{i}" for i in bad]
        raise AudioError(
            f"{', '.join(map(str, names))}: too short for the encoder (no output frame)"
        )

    def training_step(self, batch, batch_idx):
        x, lengths = self.features(batch)
        loss = self.task.loss(self.head, x, lengths, batch["target"])
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def predict_outputs(self, batch) -> list:
        x, lengths = self.features(batch)
        return self.task.predict(self.head, x, lengths)

    def on_validation_epoch_start(self):
        self._outputs = {}

    def validation_step(self, batch, batch_idx):
        outputs = self.predict_outputs(batch)
        for i, out in zip(batch["index"].tolist(), outputs, strict=True):
            self._outputs[i] = out

    def _gathered_outputs(self, n: int) -> list:
        gathered = self._outputs
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, self._outputs)
            gathered = {k: v for part in parts for k, v in part.items()}
        missing = [i for i in range(n) if i not in gathered]
        if missing:
            raise RuntimeError(
                f"{self.eval_split}: {len(missing)} of {n} examples got no prediction"
            )
        return [gathered[i] for i in range(n)]

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking:
            return
        split = self.eval_split
        examples = self.eval_examples[split]
        outputs = self._gathered_outputs(len(examples))
        self._outputs = {}
        if split == "train":  # before training: the task initialises its head from them
            self.task.init_head(self.head, examples, outputs)
            return
        if self.tuning:  # every rank tunes on the same gathered outputs
            self.tuned = self.task.tune(split, examples, outputs)
            self.tuning = False
        write = split != self.task.dev_split and self.trainer.is_global_zero
        raw = self.task.evaluate(split, examples, outputs, self.out_dir if write else None)
        scores = {k: as_score_dict(v) for k, v in raw.items()}
        items = {k: v.items for k, v in raw.items() if isinstance(v, Score) and v.items is not None}
        if write and items and self.out_dir is not None:
            write_items(Path(self.out_dir) / items_file(split), split, items)
            self.item_files[f"{split}_items"] = items_file(split)
        self.split_metrics[split] = scores
        if split == self.task.dev_split and self.trainer.state.fn == "fit":
            values = {k: v["value"] for k, v in scores.items()}
            self.dev_history.append({"epoch": self.current_epoch, **values})
        for k, v in scores.items():
            # Every rank computed the same value from the gathered outputs.
            self.log(
                f"{split}/{k}",
                float(v["value"]),
                prog_bar=k in (self.task.primary_metric, self.task.dev_metric),
                sync_dist=True,
            )

    def layer_report(self) -> dict[str, list[float]]:
        """Softmax weights, mean frame RMS and effective share of each featurizer input."""

        def r(t):
            return [round(float(v), 6) for v in t]

        return {
            "weights": r(self.featurizer.weights()),
            "scales": r(self.featurizer.layer_scales()),
            "effective_shares": r(self.featurizer.effective_shares()),
        }

    def configure_optimizers(self):
        o = self.optim
        groups = [{"params": list(self.head.parameters()), "lr": o.lr}]
        layer_params = list(self.featurizer.parameters())
        if layer_params:
            lr = o.lr * o.layer_weights_lr_scale
            groups.append({"params": layer_params, "lr": lr, "weight_decay": 0.0})
        if self.mode == "finetune" and self.encoder is not None:
            groups.append({"params": list(self.encoder.parameters()), "lr": o.encoder_lr})
        # foreach: multi-tensor updates (torch's CPU default loops over the tensors one by one),
        # the same values bit for bit
        opt = torch.optim.AdamW(groups, weight_decay=o.weight_decay, foreach=True)
        # the planned steps (Lightning counts the training loader's batches): cosine only
        total = int(self.trainer.estimated_stepping_batches) if o.schedule == "cosine" else 0
        factor = lr_factor(o.schedule, o.warmup_steps, total, o.min_lr_ratio)
        if factor is None:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def lr_factor(schedule: str, warmup: int, total: int, floor: float = 0.0):
    """The learning-rate multiplier of a step, ``step -> factor`` (None: constant, no
    scheduler): a linear warm-up from 0 over ``warmup`` steps, then 1 (``constant``) or half a
    cosine from 1 down to ``floor`` at step ``total`` - 1 (``cosine``; ``total``: the run's
    planned optimiser steps, max_epochs x batches per epoch)."""
    if schedule == "constant" and warmup <= 0:
        return None
    span = max(1, total - 1 - warmup)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        done = min(1.0, (step - warmup) / span)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * done))

    return factor
