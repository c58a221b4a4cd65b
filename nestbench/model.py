"""The downstream model: (encoder) -> featurizer -> task head, as one LightningModule.

Frozen mode: the encoder is absent (features come from the cache) or kept in eval mode without
gradients. Fine-tune mode: the encoder trains with its own learning rate, optionally frozen for the
first ``freeze_encoder_steps`` steps. The featurizer's layer weights train in both modes.
"""

from __future__ import annotations

import contextlib

import lightning as L
import torch
from torch import nn

from nestbench.featurizer import Featurizer


class DownstreamModel(L.LightningModule):
    """Args:
    task: the Task.
    featurizer: combines the hidden states.
    head: the task head (built by ``task.build_head``).
    encoder: the encoder, or None when every batch carries cached features.
    mode: "frozen" or "finetune".
    optim: the run config's ``optim`` section.
    dev_items: the dev records; the validation loop predicts them (in the order of the val
        dataloader's ``index``) and ``task.evaluate("dev", ...)`` scores them each epoch.
    cache_layers: hidden-state indices the featurizer takes when the encoder runs live (the
        cached layer selection), None for all.
    """

    def __init__(
        self,
        task,
        featurizer: Featurizer,
        head: nn.Module,
        encoder: nn.Module | None,
        mode: str,
        optim,
        dev_items: list[dict] | None = None,
        cache_layers: list[int] | None = None,
    ):
        super().__init__()
        self.task, self.featurizer, self.head, self.encoder = task, featurizer, head, encoder
        self.mode, self.optim, self.dev_items = mode, optim, dev_items or []
        self.cache_layers = cache_layers
        self.dev_history: list[dict] = []
        self._dev_outputs: dict[int, object] = {}

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
            and self.global_step >= int(self.optim.freeze_encoder_steps)
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
            out = self.encoder(batch["wav"], batch["wav_lens"])
        states = out.hidden_states
        if self.cache_layers is not None:
            states = tuple(states[i] for i in self.cache_layers)
        return self.featurizer(states), out.lengths

    def on_train_epoch_start(self):
        dataset = getattr(self.trainer.train_dataloader, "dataset", None)
        if hasattr(dataset, "set_epoch"):  # new random training crops every epoch
            dataset.set_epoch(self.current_epoch)

    def training_step(self, batch, batch_idx):
        x, lengths = self.features(batch)
        loss = self.task.loss(self.head, x, lengths, batch["target"])
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def predict_outputs(self, batch) -> list:
        x, lengths = self.features(batch)
        return self.task.predict(self.head, x, lengths)

    def on_validation_epoch_start(self):
        self._dev_outputs = {}

    def validation_step(self, batch, batch_idx):
        outputs = self.predict_outputs(batch)
        for i, out in zip(batch["index"].tolist(), outputs, strict=True):
            self._dev_outputs[i] = out

    def on_validation_epoch_end(self):
        if self.trainer.sanity_checking or not self.dev_items:
            return
        gathered = self._dev_outputs
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(parts, self._dev_outputs)
            gathered = {k: v for part in parts for k, v in part.items()}
        position = {id(item): i for i, item in enumerate(self.dev_items)}

        def predict(records):
            return [gathered[position[id(r)]] for r in records]

        metrics = self.task.evaluate("dev", predict)
        self.dev_history.append({"epoch": self.current_epoch, **metrics})
        for k, v in metrics.items():
            if isinstance(v, int | float):
                # Every rank computed the same value from the gathered outputs.
                self.log(
                    f"dev/{k}", float(v), prog_bar=k == self.task.primary_metric, sync_dist=True
                )

    def layer_weights(self) -> list[float]:
        return [round(float(w), 6) for w in self.featurizer.weights()]

    def configure_optimizers(self):
        groups = [
            {
                "params": [p for m in (self.featurizer, self.head) for p in m.parameters()],
                "lr": float(self.optim.lr),
            }
        ]
        if self.mode == "finetune" and self.encoder is not None:
            groups.append(
                {"params": list(self.encoder.parameters()), "lr": float(self.optim.encoder_lr)}
            )
        opt = torch.optim.AdamW(groups, weight_decay=float(self.optim.weight_decay))
        warmup = int(self.optim.warmup_steps)
        if warmup <= 0:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: min(1.0, (step + 1) / warmup) if warmup else 1.0
        )
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
