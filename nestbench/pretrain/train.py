"""``nestbench pretrain``: NEST pretraining on Lightning.

:func:`pretrain` builds the model (:func:`~nestbench.pretrain.config.build_model`), the data
(:mod:`nestbench.pretrain.data`) and a Trainer (accelerator auto, DDP when more than one device or
node, bf16-mixed on GPUs, gradient accumulation, max_steps), then fits. Everything goes to
``cfg.out``:

- ``config.yaml``: the resolved config; ``pretrain.log``: progress lines;
- ``logs/version_N/metrics.csv`` (one per session; a resumed run starts a new one): train_loss,
  train_acc, masked_steps, lr, val_loss, val_acc (CSVLogger);
- ``checkpoints/last.ckpt`` and ``checkpoints/step=N.ckpt`` every
  ``trainer.checkpoint_every_n_steps``, ``checkpoints/best-...ckpt`` (lowest val_loss) and, after
  Ctrl-C or a crash, ``checkpoints/interrupted.ckpt``; started again (``resume=true``) the run
  continues from the newest of ``last.ckpt`` and ``interrupted.ckpt``;
- ``last.nemo`` (written with each checkpoint and at the end) and ``best.nemo`` (lowest
  val_loss): NeMo ``.nemo`` files (:func:`nestbench.encoders.nemo_writer.save_nemo`).
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, OnExceptionCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from nestbench.data.pool import pool_manifest
from nestbench.encoders.checkpoint import CheckpointError
from nestbench.encoders.nemo_writer import save_nemo
from nestbench.sampler import ResumableLoader
from nestbench.training import (
    ConsumedBatches,
    EpochSetter,
    attach_log,
    detach_log,
    trainer_settings,
)

from .config import build_model
from .data import (
    AudioDataset,
    BucketBatchSampler,
    Collate,
    NoiseBank,
    check_audio,
    load_records,
)
from .module import NestPretrainModule

log = logging.getLogger("nestbench.pretrain")

EMBEDDED_DATASETS = ("asr", "sv", "slu", "diar")
INTERRUPTED = "interrupted"


@dataclass
class PretrainResult:
    """What a finished (or resumed-and-finished) pretraining run left behind."""

    out: Path
    nemo_path: Path
    global_step: int
    train_loss: float | None
    val_loss: float | None
    val_acc: float | None
    wall_time_s: float
    is_global_zero: bool = True


def embedded_manifests(size: str, split: str) -> list[Path]:
    """``<corpus>/<dataset>/<split>_manifest.json`` of the embedded corpus (generated if
    needed) for asr, sv, slu and diar."""
    from nestbench.data.embedded import ensure_embedded_corpus
    from nestbench.data.layout import manifest_path

    root = ensure_embedded_corpus(size)
    return [manifest_path(root, d, split) for d in EMBEDDED_DATASETS]


def data_manifests(cfg: DictConfig) -> tuple[list[str], list[str]]:
    """(train manifests, val manifests) of the config, embedded corpus included."""
    train = [str(p) for p in cfg.data.train]
    val = [str(p) for p in cfg.data.val]
    if cfg.data.embedded and cfg.data.pool_hours:
        pool = embedded_pool(str(cfg.data.embedded), float(cfg.data.pool_hours), int(cfg.seed))
        train.append(str(pool_manifest(pool, "train")))
        val.append(str(pool_manifest(pool, "val")))
    elif cfg.data.embedded:
        train += [str(p) for p in embedded_manifests(str(cfg.data.embedded), "train")]
        val += [str(p) for p in embedded_manifests(str(cfg.data.embedded), "dev")]
    return train, val


def embedded_pool(size: str, hours: float, seed: int = 0) -> Path:
    """The clean pretraining pool (:mod:`nestbench.data.pool`) of the embedded corpus of
    ``size``, made if needed."""
    from nestbench.data.embedded import ensure_embedded_corpus
    from nestbench.data.pool import make_pool

    return make_pool(ensure_embedded_corpus(size), hours, seed)


def nemo_optim(cfg: DictConfig, d_model: int) -> dict:
    """NeMo's ``optim`` section for the .nemo config."""
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    optim["sched"] = {**optim.get("sched", {}), "d_model": d_model}
    return optim


class PretrainData(L.LightningDataModule):
    """Train/val dataloaders; the batch sampler splits batches across ranks itself."""

    def __init__(self, cfg: DictConfig, train: list[str], val: list[str]):
        super().__init__()
        self.cfg = cfg
        d = cfg.data
        self.train_records = load_records(train, float(d.min_duration), d.max_duration)
        self.val_records = load_records(val, float(d.min_duration), d.max_duration) if val else []
        self.noise = NoiseBank(list(d.noise)) if d.noise else None
        check_audio([*self.train_records, *self.val_records])  # named now, not at step N

    def _loader(self, records: list[dict], batch_size: int, train: bool):
        trainer = self.trainer
        sampler = BucketBatchSampler(
            [r["duration"] for r in records],
            batch_size,
            seed=int(self.cfg.seed),
            shuffle=True,
            drop_last=train,
            fixed=not train,  # validation: one random (length-bucketed) order for all epochs
            bucket_batches=int(self.cfg.data.bucket_batches),
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
        workers = int(self.cfg.data.num_workers)
        return ResumableLoader(
            AudioDataset(records),
            batch_sampler=sampler,
            collate_fn=Collate(self.noise, int(self.cfg.seed)),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=torch.cuda.is_available(),
        )

    def train_dataloader(self):
        return self._loader(self.train_records, int(self.cfg.data.batch_size), True)

    def val_dataloader(self):
        if not self.val_records:
            return []
        return self._loader(self.val_records, int(self.cfg.data.val_batch_size), False)


class NemoExport(Callback):
    """Writes ``<out>/last.nemo`` whenever Lightning saves a checkpoint and when training ends,
    and ``<out>/best.nemo`` when val_loss improves (global rank 0 only). With ``ckpt_dir``, also
    saves ``<ckpt_dir>/last.ckpt`` every ``every`` steps and at the last step."""

    def __init__(
        self,
        out: Path,
        optim: dict,
        extra: dict,
        ckpt_dir: Path | None = None,
        every: int = 1000,
        dtype: str = "float32",
    ):
        self.out = Path(out)
        self.dtype = str(dtype)
        self.ckpt_dir = ckpt_dir
        self.every = max(1, int(every))
        self.optim = optim
        self.extra = extra
        self.best = math.inf
        self._saved_step = -1

    def write(self, trainer, module, name: str) -> None:
        """Write ``<out>/<name>`` (global rank 0 only) with the config and step as provenance."""
        if not trainer.is_global_zero:
            return
        extra = {"nestbench": {**self.extra, "global_step": int(trainer.global_step)}}
        save_nemo(module.model, self.out / name, optim=self.optim, extra=extra, dtype=self.dtype)

    def on_save_checkpoint(self, trainer, module, checkpoint) -> None:
        checkpoint["nemo_export_best"] = self.best
        if trainer.global_step != self._saved_step:
            self._saved_step = trainer.global_step
            self.write(trainer, module, "last.nemo")

    def on_load_checkpoint(self, trainer, module, checkpoint) -> None:
        self.best = float(checkpoint.get("nemo_export_best", math.inf))

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics.get("val_loss")
        if loss is not None and float(loss) < self.best:
            self.best = float(loss)
            self.write(trainer, module, "best.nemo")

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        # last.ckpt every `every` steps and at max_steps, saved inside the loop so that the
        # epoch and the place in it are those of the step (Lightning's own save_last, at the
        # end of the epoch that max_steps cuts short, records that epoch as finished): a later
        # run with more steps resumes exactly
        if self.ckpt_dir is None or trainer.global_step == self._saved_step:
            return
        done = trainer.max_steps is not None and 0 < trainer.max_steps <= trainer.global_step
        if done or trainer.global_step % self.every == 0:
            trainer.save_checkpoint(self.ckpt_dir / "last.ckpt")  # calls on_save_checkpoint

    def on_train_end(self, trainer, module) -> None:
        if self.ckpt_dir is not None and trainer.global_step != self._saved_step:
            # the final state, so that running again with the same max_steps has nothing to do
            trainer.save_checkpoint(self.ckpt_dir / "last.ckpt")  # calls on_save_checkpoint
        self.write(trainer, module, "last.nemo")


class ProgressLog(Callback):
    """Logs ``step N/M loss lr s/step`` every ``every`` steps and the validation results."""

    def __init__(self, every: int, max_steps: int):
        self.every = max(1, every)
        self.max_steps = max_steps
        self.t0 = None
        self.step0 = 0

    def on_train_start(self, trainer, module) -> None:
        self.t0 = time.perf_counter()
        self.step0 = trainer.global_step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if not trainer.is_global_zero or step % self.every or step == self.step0:
            return
        m = trainer.callback_metrics
        rate = (time.perf_counter() - self.t0) / max(1, step - self.step0)
        log.info(
            "step %d/%d  train_loss %.4f  train_acc %.4f  lr %.2e  %.2f s/step",
            step,
            self.max_steps,
            float(m.get("train_loss", float("nan"))),
            float(m.get("train_acc", float("nan"))),
            float(m.get("lr", float("nan"))),
            rate,
        )

    def on_validation_end(self, trainer, module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        m = trainer.callback_metrics
        if "val_loss" in m:
            log.info(
                "step %d  val_loss %.4f  val_acc %.4f",
                trainer.global_step,
                float(m["val_loss"]),
                float(m.get("val_acc", float("nan"))),
            )


def checkpoint_is_whole(path: Path) -> bool:
    """Whether ``path`` is a readable torch checkpoint (a zip archive whose entries all pass
    their CRC check), without unpickling it."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return z.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def resume_checkpoint(ckpt_dir: Path) -> Path | None:
    """The checkpoint to resume from: the newest whole one of ``last.ckpt``,
    ``interrupted.ckpt`` and the periodic ``step=N.ckpt``; None when there are none.

    A damaged candidate (truncated by a full disk or a kill during the write) is named in a
    warning and skipped for the next newest; ValueError when every candidate is damaged.
    """
    names = ["last.ckpt", f"{INTERRUPTED}.ckpt"]
    found = [ckpt_dir / n for n in names if (ckpt_dir / n).is_file()]
    found += sorted(ckpt_dir.glob("step=*.ckpt"))
    damaged = []
    for path in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True):
        if checkpoint_is_whole(path):
            if damaged:
                log.warning("resuming from %s instead", path)
            return path
        damaged.append(path)
        log.warning("checkpoint %s is damaged (not a whole torch archive): skipping it", path)
    if damaged:
        raise CheckpointError(
            f"{ckpt_dir}: every checkpoint to resume from is damaged "
            f"({', '.join(p.name for p in damaged)}); remove them to start again"
        )
    return None


def pretrain(cfg: DictConfig, callbacks: list[Callback] | None = None) -> PretrainResult:
    """Run (or resume) NEST pretraining as ``cfg`` (see ``configs/pretrain/base.yaml``) says.

    ``callbacks``: further Lightning callbacks for the Trainer.

    Returns a :class:`PretrainResult` on global rank 0 (other DDP ranks get one too, with the
    same paths). Raises FileNotFoundError for missing manifests or init_from checkpoints.
    """
    t0 = time.perf_counter()
    out = Path(str(cfg.out)).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    handler = (
        attach_log(out / "pretrain.log", (log.name,), "%(asctime)s %(message)s")
        if rank_zero_only.rank == 0
        else None
    )
    try:
        return _pretrain(cfg, out, t0, list(callbacks or []))
    finally:
        if handler is not None:
            detach_log(handler, (log.name,))


def _pretrain(cfg: DictConfig, out: Path, t0: float, extra: list[Callback]) -> PretrainResult:
    if cfg.trainer.threads:
        torch.set_num_threads(int(cfg.trainer.threads))
    L.seed_everything(int(cfg.seed), workers=True, verbose=False)
    train, val = data_manifests(cfg)
    if rank_zero_only.rank == 0:
        OmegaConf.save(cfg, out / "config.yaml")
    model = build_model(cfg)
    max_steps = int(cfg.trainer.max_steps)
    module = NestPretrainModule(
        model,
        OmegaConf.to_container(cfg.optim, resolve=True),
        OmegaConf.to_container(cfg.augment, resolve=True),
        seed=int(cfg.seed),
        max_steps=max_steps,
    )
    data = PretrainData(cfg, train, val)
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info(
        "pretraining NEST d_model=%d layers=%d classes=%d (%.2fM trainable parameters) on %d "
        "training segments (%.2f h), %d validation segments",
        model.encoder.cfg.d_model,
        model.encoder.cfg.n_layers,
        model.quantizer.num_classes,
        n_params / 1e6,
        len(data.train_records),
        sum(r["duration"] for r in data.train_records) / 3600,
        len(data.val_records),
    )
    t = cfg.trainer
    ckpt_dir = out / "checkpoints"
    callbacks = [
        # step-N.ckpt (the latest only) and last.ckpt, every checkpoint_every_n_steps steps
        ModelCheckpoint(
            dirpath=ckpt_dir,
            filename="{step}",
            every_n_train_steps=int(t.checkpoint_every_n_steps),
            save_top_k=1,
            save_last=False,  # last.ckpt: NemoExport (see there)
        ),
        # Ctrl-C or a crash: interrupted.ckpt holds the state reached (removed after success)
        OnExceptionCheckpoint(dirpath=ckpt_dir, filename=INTERRUPTED),
    ]
    if val and int(t.save_top_k) != 0:
        callbacks.append(
            ModelCheckpoint(
                dirpath=ckpt_dir,
                filename="best-{step}-{val_loss:.4f}",
                monitor="val_loss",
                mode="min",
                save_top_k=int(t.save_top_k),
            )
        )
    provenance = {
        "pretrained_by": "nestbench pretrain",
        "config": OmegaConf.to_container(cfg, resolve=True),
    }
    export = NemoExport(
        out,
        nemo_optim(cfg, model.encoder.cfg.d_model),
        provenance,
        ckpt_dir,
        every=int(t.checkpoint_every_n_steps),
        dtype=cfg.nemo_dtype,
    )
    settings = trainer_settings(cfg.trainer)
    trainer = L.Trainer(
        max_steps=max_steps,
        max_epochs=-1,
        **settings,
        accumulate_grad_batches=int(t.accumulate_grad_batches),
        gradient_clip_val=float(t.gradient_clip_val) or None,
        val_check_interval=int(t.val_check_interval),
        check_val_every_n_epoch=None,
        limit_val_batches=t.limit_val_batches if val else 0,
        num_sanity_val_steps=0,
        log_every_n_steps=int(t.log_every_n_steps),
        callbacks=[
            *callbacks,
            ConsumedBatches(),  # where in the epoch a checkpoint is (first: before any save)
            export,
            ProgressLog(int(t.log_every_n_steps), max_steps),
            EpochSetter(),  # a new batch order every epoch
            *extra,
        ],
        logger=CSVLogger(out, name="logs"),  # logs/version_N/metrics.csv, one per session
        enable_progress_bar=bool(t.progress),
        enable_model_summary=False,
        use_distributed_sampler=False,
        benchmark=False,
    )
    ckpt_path = resume_checkpoint(ckpt_dir)
    if ckpt_path is not None and not cfg.resume:
        raise FileExistsError(
            f"{ckpt_dir} holds checkpoints but resume=false: remove them or choose another out="
        )
    if ckpt_path:
        log.info("resuming from %s", ckpt_path)
    with warnings.catch_warnings():
        # a fresh run: Lightning's "no last checkpoint" notes do not apply
        warnings.filterwarnings("ignore", message=r".*ckpt_path.*")
        warnings.filterwarnings(
            "ignore", message=r"Checkpoint directory .* exists and is not empty"
        )
        trainer.fit(module, datamodule=data, ckpt_path=str(ckpt_path) if ckpt_path else None)
    # the final .nemo carries this session's config (a resumed run with nothing left to do
    # skips the training loop and its end-of-training hooks)
    export.write(trainer, module, "last.nemo")
    metrics = trainer.callback_metrics

    def get(name):
        v = metrics.get(name)
        return None if v is None else float(v)

    result = PretrainResult(
        out=out,
        nemo_path=out / "last.nemo",
        global_step=int(trainer.global_step),
        train_loss=get("train_loss"),
        val_loss=get("val_loss"),
        val_acc=get("val_acc"),
        wall_time_s=time.perf_counter() - t0,
        is_global_zero=trainer.is_global_zero,
    )
    if trainer.is_global_zero:
        summary = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(result).items()}
        (out / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
        log.info("finished: %s", json.dumps(summary))
    return result
