"""What every nestbench Trainer shares: device, strategy and precision settings, and run logs.

Used by task runs (:mod:`nestbench.runner`) and by ``nestbench pretrain``, so that GPUs, DDP,
bf16 and log files behave the same in both.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import lightning as L
import torch

#: The loggers whose records go to a run's log file.
LOGGERS = ("nestbench", "lightning", "lightning.pytorch")


def on_gpu(accelerator: str) -> bool:
    """Whether ``accelerator`` (cpu, gpu, cuda, auto) puts the run on CUDA devices here."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def trainer_settings(t) -> dict:
    """Lightning Trainer keywords from a config's ``trainer`` section.

    accelerator auto/cpu/gpu; devices "auto" (all GPUs, or one CPU process) or a count; DDP when
    more than one device or node; precision "auto" = bf16-mixed on GPUs, 32-true on the CPU;
    SyncBatchNorm (``sync_batchnorm``, GPU only) when the section asks for it.
    """
    accelerator = str(t.accelerator)
    gpu = on_gpu(accelerator)
    precision = str(t.precision)
    if precision == "auto":
        precision = "bf16-mixed" if gpu else "32-true"
    devices = t.devices
    n_dev = (torch.cuda.device_count() if gpu else 1) if devices in ("auto", -1) else devices
    multi = (isinstance(n_dev, int) and n_dev > 1) or int(t.num_nodes) > 1
    return {
        "accelerator": accelerator,
        "devices": devices,
        "num_nodes": int(t.num_nodes),
        "strategy": "ddp" if multi else "auto",
        "precision": precision,
        "sync_batchnorm": bool(t.get("sync_batchnorm", False)) and multi and gpu,
    }


class EpochSetter(L.Callback):
    """Calls ``set_epoch(epoch)`` on the training loader's batch sampler and dataset at the start
    of every epoch (new shuffling, buckets and crops; Lightning only reaches ``loader.sampler``)."""

    def on_train_epoch_start(self, trainer, module) -> None:
        loader = trainer.train_dataloader
        for obj in (getattr(loader, "batch_sampler", None), getattr(loader, "dataset", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(trainer.current_epoch)


class ConsumedBatches(L.Callback):
    """Counts the training batches the model has trained on in the training loader's
    :class:`~nestbench.sampler.BucketBatchSampler` (after each batch, before checkpoints are
    saved: Lightning runs checkpoint callbacks last), for :class:`~nestbench.sampler.ResumableLoader`.
    """

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        sampler = getattr(trainer.train_dataloader, "batch_sampler", None)
        if hasattr(sampler, "consumed"):
            sampler.consumed += 1


def launcher_rank() -> int:
    """Non-zero in a process that a launcher started as a non-zero rank (torchrun's ``RANK``,
    SLURM's ``SLURM_PROCID``, Lightning's ``LOCAL_RANK`` for the processes it starts); 0 in the
    first process."""
    ranks = [os.environ.get(v, "") for v in ("RANK", "SLURM_PROCID", "LOCAL_RANK")]
    return max([int(r) for r in ranks if r.isdigit()], default=0)


def attach_log(
    path: Path, loggers=LOGGERS, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s"
) -> logging.Handler:
    """Send INFO records of ``loggers`` to the file ``path`` (appending); returns the handler."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(fmt))
    for name in loggers:
        logging.getLogger(name).addHandler(handler)
    logging.getLogger(loggers[0]).setLevel(logging.INFO)
    return handler


def detach_log(handler: logging.Handler, loggers=LOGGERS) -> None:
    for name in loggers:
        logging.getLogger(name).removeHandler(handler)
    handler.close()
