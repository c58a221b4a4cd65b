"""One run: (task, encoder, mode, seed, config) -> ``<out>/<task>/<run-id>/result.json``.

:meth:`Run.execute` reads top to bottom as the steps of a run: load data (encoder, task setup,
records, examples), build the model, make the trainer, fit, evaluate every eval split through the
one prediction path, write the result (:class:`nestbench.result.RunResult`). The feature cache is
filled by :class:`TaskData.prepare_data`: once per node, on its first process, before training.

The run id comes from the resolved config (what changes the result), so re-running the same
config finds the finished run and skips it; ``result.json`` is written last and atomically, so an
interrupted run leaves none and is redone from the start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import time
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf

from nestbench.cache import FeatureCache, default_cache_root
from nestbench.config import ConfigError, resolve_run_config
from nestbench.dataset import RecordDataset, collate
from nestbench.encoders import load_encoder
from nestbench.encoders.windowed import Chunking
from nestbench.featurizer import Featurizer
from nestbench.fingerprint import data_fingerprint, encoder_files
from nestbench.lock import run_lock
from nestbench.model import DownstreamModel
from nestbench.result import NEUTRAL_DEFAULTS, NON_RESULT_KEYS, RunResult
from nestbench.sampler import BucketBatchSampler
from nestbench.task import EncoderInfo, Task, TaskError, get_task
from nestbench.training import (
    EpochSetter,
    attach_log,
    detach_log,
    launcher_rank,
    trainer_settings,
)

log = logging.getLogger("nestbench")

PACKAGES = (
    "nestbench",
    "torch",
    "torchaudio",
    "lightning",
    "speechbrain",
    "numpy",
    "scikit-learn",
    "jiwer",
    "pyannote.metrics",
)


def run_id(cfg: DictConfig, inputs: dict | None = None) -> str:
    """``<encoder>-<mode>-s<seed>-<hash>`` of the result-relevant config and ``inputs`` (the
    digests of the encoder's files and of the data, :mod:`nestbench.fingerprint`)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for dotted in NON_RESULT_KEYS:
        _pop_dotted(plain, dotted)
    for dotted, value in NEUTRAL_DEFAULTS.items():  # keys newer than finished runs
        _pop_dotted(plain, dotted, only=value)
    if inputs:
        plain["_inputs"] = inputs
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:10]
    spec = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(cfg.encoder.spec)).name)[:40]
    return f"{spec}-{cfg.mode}-s{cfg.seed}-{digest}"


_ANY = object()


def _pop_dotted(tree: dict, dotted: str, only=_ANY) -> None:
    """Remove the key ``a.b.c`` from nested dicts (if it is there, and with ``only``: if it
    holds that value)."""
    *parents, key = dotted.split(".")
    for part in parents:
        tree = tree.get(part, {})
    if key in tree and (only is _ANY or tree[key] == only):
        tree.pop(key)


def _versions() -> dict:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def _git_revision() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if rev.returncode != 0:
        return None
    return rev.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def resolve_data_dir(cfg: DictConfig) -> Path:
    """The data folder of the run: ``cfg.data``, or the embedded corpus (made on first use)."""
    if cfg.data is not None:
        path = Path(str(cfg.data)).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data folder not found: {path}")
        return path
    from nestbench.data.embedded import ensure_embedded_corpus

    return ensure_embedded_corpus(size=str(cfg.data_size))


def chunking(cfg: DictConfig) -> Chunking:
    """How the run encodes long recordings (``encoder.chunk_seconds``/``context_seconds``)."""
    return Chunking(float(cfg.encoder.chunk_seconds), float(cfg.encoder.context_seconds))


def check_layers(cfg: DictConfig, encoder) -> list[int] | None:
    """``cache.layers`` checked against the encoder (ConfigError naming the key otherwise)."""
    n = encoder.num_layers + 1
    layers = None if cfg.cache.layers is None else list(cfg.cache.layers)
    bad = [i for i in layers or [] if not 0 <= i < n]
    if bad or layers == []:
        raise ConfigError(
            f"cache.layers: {layers} is not a non-empty list of hidden-state indices of "
            f"{encoder.name} (0..{n - 1})"
        )
    inputs = n if layers is None else len(layers)
    layer = cfg.featurizer.layer
    if layer is not None and not -inputs <= layer < inputs:
        raise ConfigError(f"featurizer.layer: {layer} out of range for {inputs} inputs")
    return layers


class TaskData(L.LightningDataModule):
    """The examples of every split as DataLoaders, and the feature cache they read in frozen
    mode (filled in :meth:`prepare_data`: once per node, on its first process).

    ``split`` selects what ``val_dataloader`` serves: the dev split during fit, then each eval
    split in turn.
    """

    def __init__(
        self,
        cfg: DictConfig,
        task: Task,
        examples: dict[str, list[dict]],
        encoder,
        layers: list[int] | None,
    ):
        super().__init__()
        self.cfg, self.task, self.examples, self.encoder = cfg, task, examples, encoder
        self.split = task.dev_split
        self.layers = layers  # the cached hidden-state selection (check_layers), None for all
        self.cache = None
        if cfg.mode == "frozen" and cfg.cache.enabled:
            root = Path(cfg.cache.root) if cfg.cache.root else default_cache_root() / "features"
            self.cache = FeatureCache(
                root,
                encoder.identity(),
                layers=self.layers,
                preprocessing={"sample_rate": encoder.sample_rate},
                chunking=chunking(cfg),
                memory_mb=cfg.cache.memory_mb,
            )
        self.cache_seconds: float | None = None
        self.cache_audio_seconds = 0.0  # audio this run encoded into the cache
        self._filled = False

    def prepare_data(self) -> None:
        if self.cache is None or self._filled:
            return
        t = time.perf_counter()
        device = self.trainer.strategy.root_device if self.trainer else torch.device("cpu")
        items = [it for split in self.examples.values() for it in split]
        computed = self.cache.build(
            items,
            self.encoder.to(device),
            device=device,
            batch_seconds=self.cfg.cache.batch_seconds,
            progress=self.cfg.trainer.progress,
        )
        self.encoder.cpu()
        self._filled = True
        self.cache_seconds = time.perf_counter() - t
        self.cache_audio_seconds = float(self.cache.last_fill["audio_seconds"])
        log.info(
            "feature cache %s: %d of %d examples computed", self.cache.dir, computed, len(items)
        )

    def loader(self, examples: list[dict], train: bool) -> torch.utils.data.DataLoader:
        t = self.cfg.trainer
        ds = RecordDataset(
            examples,
            self.task,
            self.cache,
            self.encoder.frame_shift,
            crop_seconds=self.task.crop_seconds,
            train=train,
            seed=self.cfg.seed,
            sample_rate=self.encoder.sample_rate,
        )
        trainer = self.trainer
        sampler = BucketBatchSampler(
            ds.durations(),
            batch_size=t.batch_size,
            batch_seconds=t.batch_seconds,
            seed=self.cfg.seed,
            shuffle=train,
            drop_last=train,
            min_size=2 if train else 1,  # BatchNorm cannot train on a batch of one
            rank=trainer.global_rank if trainer else 0,
            world_size=trainer.world_size if trainer else 1,
        )
        return torch.utils.data.DataLoader(
            ds,
            batch_sampler=sampler,
            num_workers=t.num_workers,
            collate_fn=partial(collate, task=self.task),
        )

    def train_dataloader(self):
        return self.loader(self.examples["train"], train=True)

    def val_dataloader(self):
        return self.loader(self.examples[self.split], train=False)


class Run:
    """A prepared run; :meth:`execute` runs its steps and writes the result."""

    def __init__(self, cfg: DictConfig, force: bool = False):
        self.cfg = cfg
        self.force = force
        self.task: Task = get_task(cfg.task)(cfg)
        self.data_dir = resolve_data_dir(cfg)
        self.inputs = {
            "encoder_files": encoder_files(
                cfg.encoder.spec, OmegaConf.to_container(cfg.encoder.kwargs)
            ),
            "data": data_fingerprint(
                self.task.data_folder(self.data_dir),
                exclude=[cfg.out, cfg.cache.root or default_cache_root()],
            ),
        }
        self.id = run_id(cfg, self.inputs)
        self.dir = Path(str(cfg.out)).expanduser() / cfg.task / self.id
        self.result_path = self.dir / "result.json"
        self.timings: dict[str, float] = {}
        self.is_global_zero = True

    @property
    def finished(self) -> bool:
        return self.result_path.is_file()

    def execute(self) -> RunResult | None:
        """Run every step; the result on global rank 0, None on other DDP ranks.

        The first process starts the folder afresh: the config, and no checkpoints of an earlier
        (interrupted or --force'd) attempt; other ranks only read and compute."""
        first = launcher_rank() == 0
        if first:
            self.dir.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(self.dir / "checkpoints", ignore_errors=True)
            (self.dir / "config.yaml").write_text(OmegaConf.to_yaml(self.cfg))
        handler = attach_log(self.dir / "run.log") if first else None
        try:
            t0 = time.perf_counter()
            L.seed_everything(self.cfg.seed, workers=True, verbose=False)
            data = self.load_data()
            model = self.build_model(data)
            trainer, ckpt = self.make_trainer()
            self.fit(trainer, model, data, ckpt)
            metrics = self.evaluate(trainer, model, data)
            self.is_global_zero = trainer.is_global_zero
            if not trainer.is_global_zero:
                return None
            self.timings["total"] = time.perf_counter() - t0
            return self.write_result(model, data, metrics, ckpt)
        finally:
            if handler is not None:
                detach_log(handler)

    # -- the steps ---------------------------------------------------------------------------

    def load_data(self) -> TaskData:
        """Encoder, task setup (frame rate, run folder), records and examples of every split."""
        cfg, task = self.cfg, self.task
        t = time.perf_counter()
        self.encoder = load_encoder(cfg.encoder.spec, **OmegaConf.to_container(cfg.encoder.kwargs))
        layers = check_layers(cfg, self.encoder)
        self.info = EncoderInfo.of(self.encoder, None if layers is None else len(layers))
        task.setup(self.info, self.dir)
        splits = task.load(self.data_dir)
        task.check_splits(splits)
        examples = {s: task.examples(s, splits[s]) for s in task.splits}
        empty = [s for s, e in examples.items() if not e]
        if empty:
            raise TaskError(f"task {task.name}: no examples in the {', '.join(empty)} split(s)")
        log.info(
            "run %s: task %s on %s (%s)",
            self.id,
            cfg.task,
            self.data_dir,
            ", ".join(
                f"{s} {len(splits[s])} records, {len(examples[s])} examples" for s in examples
            ),
        )
        self.timings["load"] = time.perf_counter() - t
        return TaskData(cfg, task, examples, self.encoder, layers)

    def build_model(self, data: TaskData) -> DownstreamModel:
        cfg = self.cfg
        featurizer = Featurizer(
            self.info.num_inputs,
            self.info.hidden_size,
            layer=cfg.featurizer.layer,
            layer_norm=cfg.featurizer.layer_norm,
        )
        head = self.task.build_head(self.info)
        encoder = None if data.cache is not None else self.encoder
        if encoder is not None and cfg.mode == "frozen":
            encoder.requires_grad_(False)  # never trained (and DDP expects no unused parameters)
        if cfg.optim.gradient_checkpointing and cfg.mode == "finetune":
            if not hasattr(encoder, "set_gradient_checkpointing"):
                raise ConfigError(
                    f"optim.gradient_checkpointing: encoder {cfg.encoder.spec} does not support it"
                )
            encoder.set_gradient_checkpointing(True)
        model = DownstreamModel(
            self.task,
            featurizer,
            head,
            encoder,
            cfg.mode,
            cfg.optim,
            eval_examples=data.examples,
            cache_layers=data.layers,
            out_dir=self.dir,
            chunking=chunking(cfg),
        )
        model.train()  # the encoder too in finetune mode (load_encoder returns eval mode)
        self.initial_weights = [round(float(w), 6) for w in featurizer.weights()]
        return model

    def make_trainer(self):
        from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
        from lightning.pytorch.loggers import CSVLogger

        t, task = self.cfg.trainer, self.task
        monitor = f"{task.dev_split}/{task.dev_metric}"
        mode = "min" if task.dev_lower_is_better else "max"
        ckpt = ModelCheckpoint(
            dirpath=self.dir / "checkpoints",
            monitor=monitor,
            mode=mode,
            save_top_k=1,
            filename="best",
            save_weights_only=True,
            enable_version_counter=False,
        )
        settings = trainer_settings(t)
        o = self.cfg.optim
        live_frozen = self.cfg.mode == "finetune" and o.freeze_encoder_steps > 0
        if settings["strategy"] == "ddp" and live_frozen:
            # the encoder gets no gradients in its frozen steps
            settings["strategy"] = "ddp_find_unused_parameters_true"
        trainer = L.Trainer(
            max_epochs=t.max_epochs,
            **settings,
            callbacks=[
                ckpt,
                EarlyStopping(monitor=monitor, patience=t.patience, mode=mode),
                EpochSetter(),  # new crops and batches every epoch
                LearningRateMonitor("step"),  # logs/metrics.csv: lr-AdamW (the head's group)
            ],
            logger=CSVLogger(self.dir, name="logs", version=""),
            enable_progress_bar=t.progress,
            enable_model_summary=False,
            gradient_clip_val=t.gradient_clip_val,
            log_every_n_steps=t.log_every_n_steps,
            num_sanity_val_steps=0,
            use_distributed_sampler=False,  # BucketBatchSampler deals batches to ranks
            deterministic=False,
        )
        return trainer, ckpt

    def fit(self, trainer, model: DownstreamModel, data: TaskData, ckpt) -> None:
        """Train, then load the best checkpoint (by the dev metric) into ``model``."""
        t = time.perf_counter()
        if self.task.init_head_from_train:
            data.split = model.eval_split = "train"
            trainer.validate(model, datamodule=data, verbose=False)
        data.split = model.eval_split = self.task.dev_split
        trainer.fit(model, datamodule=data)
        self.timings["train"] = time.perf_counter() - t - (data.cache_seconds or 0.0)
        if data.cache_seconds is not None:
            self.timings["cache"] = data.cache_seconds
            self.timings["cache_audio"] = data.cache_audio_seconds
        trainer.strategy.barrier()
        self.checkpoint = ckpt.best_model_path or None
        if self.checkpoint:
            state = torch.load(self.checkpoint, map_location="cpu", weights_only=True)
            model.load_state_dict(state["state_dict"])

    def evaluate(self, trainer, model: DownstreamModel, data: TaskData) -> dict:
        """Every eval split through the validation loop (the dev split's path): split -> scores.

        A task with ``tune_on_dev`` first tunes on the best model's dev outputs."""
        if self.task.tune_on_dev:
            t = time.perf_counter()
            data.split = model.eval_split = self.task.dev_split
            model.tuning = True
            trainer.validate(model, datamodule=data, verbose=False)
            self.timings["tune"] = time.perf_counter() - t
        t = time.perf_counter()
        for split in self.task.eval_splits:
            data.split = model.eval_split = split
            trainer.validate(model, datamodule=data, verbose=False)
        self.timings["evaluate"] = time.perf_counter() - t
        self.device = str(trainer.strategy.root_device)
        return {s: model.split_metrics[s] for s in self.task.eval_splits}

    def write_result(self, model, data: TaskData, metrics: dict, ckpt) -> RunResult:
        cfg, task, enc = self.cfg, self.task, self.encoder
        n = self.info.num_inputs
        result = RunResult(
            task=cfg.task,
            encoder=str(cfg.encoder.spec),
            mode=str(cfg.mode),
            seed=cfg.seed,
            run_id=self.id,
            primary_metric=task.primary_metric,
            lower_is_better=task.lower_is_better,
            dev_metric=task.dev_metric,
            metrics=metrics,
            eval_splits=list(task.eval_splits),
            dev_split=task.dev_split,
            dev_history=model.dev_history,
            best_epoch=_best_epoch(model.dev_history, task),
            layer_weights={
                "initial": self.initial_weights,
                "final": model.layer_report()["weights"],
                **{k: v for k, v in model.layer_report().items() if k != "weights"},
                "layers": data.layers if data.layers is not None else list(range(n)),
            },
            encoder_info={
                "name": enc.name,
                "num_layers": enc.num_layers,
                "hidden_size": enc.hidden_size,
                "frame_shift": enc.frame_shift,
                "parameters": sum(p.numel() for p in enc.parameters()),
                "identity": enc.identity(),
            },
            data=str(self.data_dir),
            inputs=self.inputs,
            cache=str(data.cache.dir) if data.cache else None,
            checkpoint=self.checkpoint,
            artifacts={**self.task.artifacts(), **model.item_files},
            tuned=model.tuned,
            timings_s={k: round(v, 2) for k, v in self.timings.items()},
            config=OmegaConf.to_container(cfg, resolve=True),
            versions=_versions(),
            git_revision=_git_revision(),
            device=self.device,
            finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        result.write(self.result_path)
        return result


def _best_epoch(history: list[dict], task) -> int | None:
    """The epoch the checkpoint callback kept: the first best value of the dev metric."""
    metric = task.dev_metric
    vals = [(h[metric], h["epoch"]) for h in history if metric in h]
    if not vals:
        return None
    best = min(v for v, _ in vals) if task.dev_lower_is_better else max(v for v, _ in vals)
    return next(e for v, e in vals if v == best)


def run(
    task: str,
    overrides: list[str] | None = None,
    force: bool = False,
    wait: float = 0.0,
    **explicit,
) -> tuple[Run, RunResult | None]:
    """Resolve the config, then run unless a finished result exists (``force`` re-runs, keeping
    the earlier ``result.json`` as ``result.<time>.json``).

    The run folder is locked while the run works in it (:mod:`nestbench.lock`): an identical run
    started meanwhile waits up to ``wait`` seconds (then finds the result) or raises
    RunInProgress. Returns (run, result); result is None when the run was skipped (and on DDP
    ranks other than 0: ``run.is_global_zero`` tells which).
    """
    cfg = resolve_run_config(task, overrides, **explicit)
    r = Run(cfg, force=force)
    if launcher_rank() != 0:  # a process of a DDP run: the first process holds the lock
        return r, (None if r.finished and not force else r.execute())
    with run_lock(r.dir, wait=wait):
        if r.finished:
            if not force:
                return r, None
            stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(r.result_path.stat().st_mtime))
            kept = r.result_path.with_name(f"result.{stamp}.json")
            os.replace(r.result_path, kept)
            log.info("--force: the earlier result is kept as %s", kept)
        return r, r.execute()
