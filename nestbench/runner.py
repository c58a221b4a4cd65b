"""One run: (task, encoder, mode, seed, config) -> ``<out>/<task>/<run-id>/result.json``.

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
import subprocess
import time
from functools import partial
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from nestbench.cache import FeatureCache, default_cache_root
from nestbench.config import resolve_run_config
from nestbench.data.manifest import atomic_write_text
from nestbench.dataset import RecordDataset, collate
from nestbench.encoders import load_encoder
from nestbench.featurizer import Featurizer
from nestbench.model import DownstreamModel
from nestbench.task import get_task

log = logging.getLogger("nestbench")

#: Config keys that do not change a run's result (excluded from the run id).
NON_RESULT_KEYS = (
    "out",
    "trainer.progress",
    "trainer.num_workers",
    "cache.root",
    "cache.batch_seconds",
    "cache.enabled",
)
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


def run_id(cfg: DictConfig) -> str:
    """``<encoder>-<mode>-s<seed>-<hash of the result-relevant config>``."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    for dotted in NON_RESULT_KEYS:
        node, *rest = dotted.split(".")
        holder = plain
        for part in [node, *rest][:-1]:
            holder = holder.get(part, {})
        holder.pop(dotted.split(".")[-1], None)
    digest = hashlib.sha256(json.dumps(plain, sort_keys=True).encode()).hexdigest()[:10]
    spec = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(cfg.encoder.spec)).name)[:40]
    return f"{spec}-{cfg.mode}-s{cfg.seed}-{digest}"


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


def write_json_atomic(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=str) + "\n")


def _attach_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "run.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("nestbench", "lightning", "lightning.pytorch"):
        logging.getLogger(name).addHandler(handler)
    logging.getLogger("nestbench").setLevel(logging.INFO)
    return handler


def _detach_log(handler: logging.Handler) -> None:
    for name in ("nestbench", "lightning", "lightning.pytorch"):
        logging.getLogger(name).removeHandler(handler)
    handler.close()


def resolve_data_dir(cfg: DictConfig) -> Path:
    """The data folder of the run: ``cfg.data``, or the embedded corpus (made on first use)."""
    if cfg.data is not None:
        path = Path(str(cfg.data)).expanduser()
        if not path.is_dir():
            raise FileNotFoundError(f"data folder not found: {path}")
        return path
    from nestbench.data.embedded import ensure_embedded_corpus

    return ensure_embedded_corpus(size=str(cfg.data_size))


class Run:
    """A prepared run; :meth:`execute` trains, evaluates and writes the result."""

    def __init__(self, cfg: DictConfig, force: bool = False):
        self.cfg = cfg
        self.force = force
        self.task = get_task(cfg.task)(cfg)
        self.id = run_id(cfg)
        self.dir = Path(str(cfg.out)).expanduser() / cfg.task / self.id
        self.result_path = self.dir / "result.json"

    @property
    def finished(self) -> bool:
        return self.result_path.is_file()

    def execute(self) -> dict:
        cfg, task = self.cfg, self.task
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        handler = _attach_log(self.dir)
        try:
            return self._execute(cfg, task)
        finally:
            _detach_log(handler)

    def _execute(self, cfg, task) -> dict:
        import lightning as L
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
        from lightning.pytorch.loggers import CSVLogger

        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        L.seed_everything(int(cfg.seed), workers=True, verbose=False)
        data_dir = resolve_data_dir(cfg)
        splits = task.load(data_dir)
        log.info(
            "run %s: task %s on %s (%s)",
            self.id,
            cfg.task,
            data_dir,
            ", ".join(f"{k} {len(v)}" for k, v in splits.items()),
        )
        encoder = load_encoder(str(cfg.encoder.spec), **OmegaConf.to_container(cfg.encoder.kwargs))
        accelerator = str(cfg.trainer.accelerator)
        device = (
            "cuda"
            if accelerator in ("gpu", "cuda", "auto") and torch.cuda.is_available()
            else "cpu"
        )
        timings["load"] = time.perf_counter() - t0

        layers = None if cfg.cache.layers is None else list(cfg.cache.layers)
        cache = None
        if cfg.mode == "frozen" and cfg.cache.enabled:
            t = time.perf_counter()
            root = (
                Path(str(cfg.cache.root)) if cfg.cache.root else default_cache_root() / "features"
            )
            cache = FeatureCache(
                root,
                encoder.identity(),
                layers=layers,
                preprocessing={"sample_rate": encoder.sample_rate},
            )
            all_items = [it for items in splits.values() for it in items]
            computed = cache.build(
                all_items,
                encoder.to(device),
                device=device,
                batch_seconds=float(cfg.cache.batch_seconds),
                progress=bool(cfg.trainer.progress),
            )
            timings["cache"] = time.perf_counter() - t
            log.info(
                "feature cache %s: %d of %d utterances computed",
                cache.dir,
                computed,
                len(all_items),
            )
            encoder = encoder.cpu()

        n_inputs = len(layers) if layers is not None else encoder.num_layers + 1
        featurizer = Featurizer(
            n_inputs,
            encoder.hidden_size,
            layer=cfg.featurizer.layer,
            layer_norm=bool(cfg.featurizer.layer_norm),
        )
        head = task.build_head(encoder.hidden_size, encoder.frame_shift)
        if cfg.optim.gradient_checkpointing and cfg.mode == "finetune":
            if not hasattr(encoder, "set_gradient_checkpointing"):
                raise ValueError(
                    f"encoder {cfg.encoder.spec} does not support gradient checkpointing"
                )
            encoder.set_gradient_checkpointing(True)
        model = DownstreamModel(
            task,
            featurizer,
            head,
            None if cache is not None else encoder,
            str(cfg.mode),
            cfg.optim,
            dev_items=splits["dev"],
            cache_layers=layers,
        )

        def loader(items, train: bool):
            ds = RecordDataset(
                items,
                task,
                cache,
                encoder.frame_shift,
                crop_seconds=task.crop_seconds,
                train=train,
                seed=int(cfg.seed),
                sort_by_duration=not train,
            )
            return torch.utils.data.DataLoader(
                ds,
                batch_size=int(cfg.trainer.batch_size),
                shuffle=train,
                num_workers=int(cfg.trainer.num_workers),
                collate_fn=partial(collate, task=task),
            )

        precision = cfg.trainer.precision
        if precision == "auto":
            precision = "bf16-mixed" if device == "cuda" else "32-true"
        devices = cfg.trainer.devices
        n_dev = torch.cuda.device_count() if devices == "auto" and device == "cuda" else devices
        strategy = (
            "ddp"
            if isinstance(n_dev, int) and n_dev > 1 or int(cfg.trainer.num_nodes) > 1
            else "auto"
        )
        monitor = f"dev/{task.primary_metric}"
        ckpt = ModelCheckpoint(
            dirpath=self.dir / "checkpoints",
            monitor=monitor,
            mode="min" if task.lower_is_better else "max",
            save_top_k=1,
            filename="best",
            save_weights_only=True,
        )
        trainer = L.Trainer(
            max_epochs=int(cfg.trainer.max_epochs),
            accelerator=accelerator,
            devices=devices,
            num_nodes=int(cfg.trainer.num_nodes),
            strategy=strategy,
            precision=precision,
            callbacks=[
                ckpt,
                EarlyStopping(
                    monitor=monitor,
                    patience=int(cfg.trainer.patience),
                    mode="min" if task.lower_is_better else "max",
                ),
            ],
            logger=CSVLogger(self.dir, name="logs", version=""),
            enable_progress_bar=bool(cfg.trainer.progress),
            enable_model_summary=False,
            gradient_clip_val=float(cfg.trainer.gradient_clip_val),
            log_every_n_steps=int(cfg.trainer.log_every_n_steps),
            num_sanity_val_steps=0,
            deterministic=False,
        )
        model.train()  # the encoder too in finetune mode (load_encoder returns eval mode)
        weights_before = model.layer_weights()
        t = time.perf_counter()
        trainer.fit(model, loader(splits["train"], True), loader(splits["dev"], False))
        timings["train"] = time.perf_counter() - t
        if not trainer.is_global_zero:
            return {}
        if ckpt.best_model_path:
            state = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["state_dict"])
        model = model.to(device).eval()

        def predict(records):
            out: list = [None] * len(records)
            with torch.inference_mode():
                for batch in loader(records, False):
                    idx = batch.pop("index").tolist()
                    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
                    for i, o in zip(idx, model.predict_outputs(batch), strict=True):
                        out[i] = o
            return out

        t = time.perf_counter()
        metrics = task.evaluate("test", predict, self.dir)
        timings["test"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        result = {
            "task": cfg.task,
            "encoder": str(cfg.encoder.spec),
            "mode": str(cfg.mode),
            "seed": int(cfg.seed),
            "run_id": self.id,
            "primary_metric": task.primary_metric,
            "lower_is_better": task.lower_is_better,
            "metrics": metrics,
            "layer_weights": {
                "initial": weights_before,
                "final": model.layer_weights(),
                "layers": layers if layers is not None else list(range(n_inputs)),
            },
            "dev_history": model.dev_history,
            "best_epoch": _best_epoch(model.dev_history, task),
            "encoder_info": {
                "name": encoder.name,
                "num_layers": encoder.num_layers,
                "hidden_size": encoder.hidden_size,
                "frame_shift": encoder.frame_shift,
                "identity": encoder.identity(),
            },
            "data": str(data_dir),
            "cache": str(cache.dir) if cache else None,
            "timings_s": {k: round(v, 2) for k, v in timings.items()},
            "config": OmegaConf.to_container(cfg, resolve=True),
            "versions": _versions(),
            "git_revision": _git_revision(),
            "device": device,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(self.result_path, result)
        return result


def _best_epoch(history: list[dict], task) -> int | None:
    vals = [(h[task.primary_metric], h["epoch"]) for h in history if task.primary_metric in h]
    if not vals:
        return None
    return (min(vals) if task.lower_is_better else max(vals))[1]


def run(
    task: str, overrides: list[str] | None = None, force: bool = False, **explicit
) -> tuple[Run, dict | None]:
    """Resolve the config, then run unless a finished result exists (``force`` re-runs, keeping
    the earlier ``result.json`` as ``result.<time>.json``).

    Returns (run, result); result is None when the run was skipped.
    """
    cfg = resolve_run_config(task, overrides, **explicit)
    r = Run(cfg, force=force)
    if r.finished:
        if not force:
            return r, None
        stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(r.result_path.stat().st_mtime))
        kept = r.result_path.with_name(f"result.{stamp}.json")
        os.replace(r.result_path, kept)
        log.info("--force: the earlier result is kept as %s", kept)
    return r, r.execute()
