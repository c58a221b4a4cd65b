"""The NEST pretraining step as a LightningModule.

A training step: augment the clean batch (:mod:`nestbench.pretrain.augment`, seeded from
``(seed, rank, step)`` so a resumed run draws what the uninterrupted one would), then
``NestModel.forward_pretrain(clean, noisy)``: quantizer targets from the clean audio, block
masking and the encoder on the noisy audio, masked-token NLL. Validation runs the same with a
fixed seed per batch (comparable across checkpoints) and reports ``val_loss`` and ``val_acc``
(masked-token accuracy). Optimiser: AdamW with NeMo's Noam schedule, stepped per optimizer step.

The wrapped model is ``self.model``, so Lightning checkpoints hold NeMo's keys under ``model.``
(``nestbench.encoders.nest.load_nest`` strips it).
"""

from __future__ import annotations

import lightning as L
import torch

from nestbench.encoders.nest import NestModel
from nestbench.encoders.ssl_modules import scored_steps

from .augment import AugmentConfig, SpeakerNoiseAugmentation
from .schedule import NoamAnnealing


def masked_token_stats(
    log_probs: torch.Tensor,
    tokens: torch.Tensor,
    masks: torch.Tensor,
    combine_time_steps: int = 8,
    mask_threshold: float = 0.8,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The steps the loss scores, and how many the model gets right.

    log_probs: [B, T', C, H]; tokens: [B, T'', H]; masks: [B, F, T] (T = T' * k).
    Returns (correct: scalar count of argmax == target over the scored steps and codebooks,
    total: scalar count of scored (step, codebook) pairs, targets: LongTensor [N, H] of the
    scored steps).
    """
    _, selected, tokens = scored_steps(
        masks, tokens, log_probs.shape[1], combine_time_steps, mask_threshold
    )
    targets = tokens[selected]  # [N, H]
    pred = log_probs[selected].argmax(1)  # [N, H]
    correct = (pred == targets).sum()
    return correct, torch.tensor(targets.numel(), device=targets.device), targets


def _step_seed(seed: int, rank: int, step: int, salt: int = 0) -> int:
    return (seed * 1_000_003 + rank * 10_007 + step * 101 + salt) % (2**63 - 1)


class NestPretrainModule(L.LightningModule):
    """LightningModule around a :class:`NestModel` with its pretraining parts.

    batch: dict with ``audio`` [B, S], ``audio_len`` [B] (and optionally ``noise`` [B, S'],
    ``noise_len`` [B] read from a noise manifest).
    """

    def __init__(
        self,
        model: NestModel,
        optim: dict,
        augment: dict | None = None,
        seed: int = 0,
        max_steps: int | None = None,
    ):
        super().__init__()
        if model.quantizer is None or model.decoder is None or model.mask_processor is None:
            raise ValueError("pretraining needs a NestModel with quantizer, masking and decoder")
        self.model = model
        self.optim_cfg = dict(optim)
        self.augment = SpeakerNoiseAugmentation(AugmentConfig(**(augment or {})))
        self.seed = int(seed)
        self.max_steps = max_steps
        self._micro_step, self._micro = -1, 0  # micro-batches of one optimizer step

    # ----------------------------------------------------------------------- steps

    def _generator(self, step: int, salt: int = 0) -> torch.Generator:
        g = torch.Generator(device=self.device)
        g.manual_seed(_step_seed(self.seed, self.global_rank, step, salt))
        return g

    def _pretrain_step(self, batch: dict, generator: torch.Generator) -> dict:
        audio, audio_len = batch["audio"], batch["audio_len"]
        noisy, noisy_len, _ = self.augment(
            audio, audio_len, generator, batch.get("noise"), batch.get("noise_len")
        )
        out = self.model.forward_pretrain(audio, audio_len, noisy, noisy_len, apply_mask=True)
        correct, total, _ = masked_token_stats(
            out["log_probs"].detach(), out["tokens"], out["masks"], **self.model.loss_cfg
        )
        out["correct"], out["total"] = correct, total
        return out

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # the masking and dropout draw from torch's global RNG: seed it per step as well, from
        # the optimizer step and the micro-batch within it (not Lightning's batch_idx, which
        # restarts from 0 when a run resumes from a checkpoint saved at its last step)
        self._micro = self._micro + 1 if self.global_step == self._micro_step else 0
        self._micro_step = self.global_step
        torch.manual_seed(_step_seed(self.seed, self.global_rank, self.global_step, self._micro))
        out = self._pretrain_step(batch, self._generator(self.global_step, self._micro))
        bs = batch["audio"].shape[0]
        self.log("train_loss", out["loss"], prog_bar=True, batch_size=bs)
        self.log("train_acc", out["correct"] / out["total"].clamp(min=1), batch_size=bs)
        self.log("masked_steps", out["total"].float(), batch_size=bs)
        self.log("lr", self.optimizers().param_groups[0]["lr"], prog_bar=True, batch_size=bs)
        return out["loss"]

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(_step_seed(self.seed, 0, batch_idx, salt=7))
            g = torch.Generator(device=self.device)
            g.manual_seed(_step_seed(self.seed, 0, batch_idx, salt=11))
            out = self._pretrain_step(batch, g)
        bs = batch["audio"].shape[0]
        self.log("val_loss", out["loss"], prog_bar=True, batch_size=bs, sync_dist=True)
        self.log(
            "val_acc",
            out["correct"] / out["total"].clamp(min=1),
            batch_size=bs,
            sync_dist=True,
        )

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # NeMo's .ckpt layout: the model config under hyper_parameters.cfg, so load_nest builds
        # a checkpoint's exact architecture, targets and masking (not inferred from shapes)
        checkpoint.setdefault("hyper_parameters", {})["cfg"] = self.model.to_nemo_config()

    # ----------------------------------------------------------------------- optimisation

    def configure_optimizers(self):
        o = self.optim_cfg
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params,
            lr=float(o["lr"]),
            betas=tuple(float(b) for b in o.get("betas", (0.9, 0.98))),
            weight_decay=float(o.get("weight_decay", 1e-3)),
        )
        sched = dict(o.get("sched") or {})
        scheduler = NoamAnnealing(
            optimizer,
            d_model=self.model.encoder.cfg.d_model,
            warmup_steps=sched.get("warmup_steps"),
            warmup_ratio=sched.get("warmup_ratio"),
            max_steps=self.max_steps,
            min_lr=float(sched.get("min_lr", 0.0)),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
