"""``nestbench sweep``: the runs of a sweep file, on this machine or a SLURM cluster.

A sweep (:mod:`nestbench.sweep_config`) expands to cells; each cell is one ``nestbench run``
(:func:`nestbench.runner.run`), so its folder is ``<out>/<task>/<run-id>/`` and its id comes from
what its result depends on. What the sweep itself keeps is under ``<out>/sweeps/<name>/``:

- ``sweep.json``: the sweep's settings and every cell with its run folder (stage-2 cells of a
  learning-rate search get theirs once the search has chosen);
- ``cells/<cell>.json``: each cell's state, written by the process that runs it: ``running``
  (with its start time and host), then ``done`` or ``failed`` (with the error), and its times;
- ``lr_search.json``: per searched (encoder, task, mode), every point tried with its dev value,
  and the chosen learning rate;
- ``summary.json`` and ``sweep.log``.

Resuming: a cell whose ``result.json`` exists is not run again (a killed sweep loses only the
runs in flight; their folders hold no result, so they are redone from the start). Failures are
isolated: a failing cell is recorded and the others go on; :func:`run_sweep` returns the summary
and the command exits 1 when a cell failed.

Executors: ``local`` runs the cells in this process one after another, or ``jobs`` at once in
worker processes (``concurrent.futures``, each with its share of the cores); ``slurm`` hands each
cell to SLURM through submitit (``AutoExecutor``; one job per run, DDP inside a job when
``tasks_per_node`` > 1 and ``trainer.devices`` says so); ``submitit-local`` is submitit's local
executor (the slurm path, on this machine). Frozen runs of one encoder on the same items share one
feature-cache fill: the cache takes turns under a file lock (:meth:`FeatureCache.build`).
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import importlib
import json
import logging
import math
import multiprocessing
import os
import socket
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

from nestbench.data.manifest import atomic_write_text
from nestbench.errors import UserError
from nestbench.lock import is_locked
from nestbench.sweep_config import Cell, SweepConfig, expand, with_lr

log = logging.getLogger("nestbench.sweep")


class SweepError(UserError):
    """A sweep that cannot be planned or read."""


def sweep_dir(out: str | Path, name: str) -> Path:
    return Path(out).expanduser() / "sweeps" / name


def call_plugins(plugins: Iterable[str]) -> None:
    """Call each ``module:function`` (registers tasks or encoders in this process)."""
    for spec in plugins:
        module, _, func = str(spec).partition(":")
        try:
            fn = getattr(importlib.import_module(module), func) if func else None
        except (ImportError, AttributeError) as e:
            raise SweepError(f"plugins: {spec!r} is not an importable module:function ({e})") from e
        if fn is not None:
            fn()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write_json(path: Path, data) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


# -- one cell, in whatever process runs it -----------------------------------------------------


def run_cell(job: dict) -> dict:
    """Run one cell (``job``: the cell, its overrides and where to record it) and return its state.

    Picklable and self-contained: it runs in this process, a worker process or a SLURM job. Only
    the first process of a DDP job records the state."""
    from nestbench.training import launcher_rank

    first = launcher_rank() == 0
    state = {**job["cell"], "run_dir": job.get("run_dir"), "host": socket.gethostname()}
    state["attempt"] = job.get("attempt")
    state_path = Path(job["state_path"])
    t0 = time.perf_counter()
    state |= {"status": "running", "started_at": _now(), "pid": os.getpid()}
    if first:
        _write_json(state_path, state)
    try:
        call_plugins(job.get("plugins", []))
        if job.get("threads"):
            import torch

            torch.set_num_threads(int(job["threads"]))
        from nestbench.runner import run

        r, result = run(
            job["cell"]["task"],
            job["overrides"],
            encoder=job["cell"]["encoder"],
            mode=job["cell"]["mode"],
            seed=job["cell"]["seed"],
            data=job.get("data"),
            out=job["out"],
        )
        state["run_dir"] = str(r.dir)
        state["status"] = "done"
        state["reused"] = result is None
    except Exception as e:  # recorded; the sweep goes on
        state["status"] = "failed"
        state["error"] = f"{type(e).__name__}: {e}".splitlines()[0]
        state["traceback"] = traceback.format_exc()
    state["finished_at"] = _now()
    state["seconds"] = round(time.perf_counter() - t0, 2)
    if first:
        _write_json(state_path, state)
    return state


# -- executors ---------------------------------------------------------------------------------


def _threads(cfg: SweepConfig, jobs: int) -> int | None:
    if cfg.executor.threads:
        return int(cfg.executor.threads)
    if jobs <= 1:
        return None
    return max(1, (os.cpu_count() or 1) // jobs)


def execute(cfg: SweepConfig, jobs: list[dict], folder: Path, on_done: Callable[[dict], None]):
    """Run ``jobs`` with the sweep's executor, calling ``on_done(state)`` as each ends."""
    if not jobs:
        return
    name, n = cfg.executor.name, int(cfg.executor.jobs)
    if name == "local" and n == 1:
        for job in jobs:
            on_done(run_cell(job))
        return
    if name == "local":
        _pool(jobs, n, on_done)
        return
    import submitit

    ex = submitit.AutoExecutor(
        folder=folder / "submitit", cluster="local" if name == "submitit-local" else "slurm"
    )
    s = cfg.executor.slurm
    ex.update_parameters(
        name=f"nestbench-{cfg.name}",
        timeout_min=s.timeout_min,
        nodes=s.nodes,
        tasks_per_node=s.tasks_per_node,
        cpus_per_task=s.cpus_per_task,
        gpus_per_node=s.gpus_per_node,
        mem_gb=s.mem_gb,
        slurm_array_parallelism=s.array_parallelism,
        **({"slurm_partition": s.partition} if s.partition else {}),
        **({"slurm_additional_parameters": dict(s.additional)} if s.additional else {}),
    )
    with ex.batch():  # one job array: slurm_array_parallelism bounds how many run at once
        futures = [ex.submit(run_cell, job) for job in jobs]
    submitted = list(zip(futures, jobs, strict=True))
    log.info("submitted %d jobs (%s)", len(submitted), ", ".join(j.job_id for j, _ in submitted))
    for job, spec in submitted:
        # a job of several tasks (DDP) returns one state per task: the first process's counts
        on_done(_outcome(lambda job=job: job.results()[0], spec))


def _pool(jobs: list[dict], n: int, on_done: Callable[[dict], None]) -> None:
    """``jobs`` in ``n`` worker processes. A worker that dies (killed, out of memory, a crash in
    native code) breaks the pool and every run in flight with it: those are retried one at a
    time, each in a pool of its own, so only the one that kills its worker is recorded as
    failed; the runs not started go to a new pool."""
    pending, suspects = list(jobs), []
    while pending:
        pending, running = _pool_round(pending, n, on_done)
        suspects += running
    for job in suspects:
        _, died = _pool_round([job], 1, on_done)
        for dead in died:
            on_done(_failed(dead, "its worker process died (killed, out of memory or a crash)"))


def _pool_round(jobs: list[dict], n: int, on_done) -> tuple[list[dict], list[dict]]:
    """Run ``jobs`` in one pool; returns (not started, in flight) when the pool broke."""
    ctx = multiprocessing.get_context("spawn")
    left = list(jobs)
    with cf.ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
        futures = {pool.submit(run_cell, job): job for job in jobs}
        try:
            for fut in cf.as_completed(futures):
                job = futures[fut]
                on_done(fut.result())
                left.remove(job)
        except cf.process.BrokenProcessPool:
            pass
    if not left:
        return [], []
    waiting, running = [], []
    for job in left:
        state = _read_json(Path(job["state_path"])) or {}
        if state.get("attempt") != job.get("attempt"):  # an earlier sweep's record
            state = {}
        if state.get("status") == "running":
            running.append(job)
        elif state.get("status") in ("done", "failed") and state.get("finished_at"):
            on_done(state)  # it finished as the pool broke
        else:
            waiting.append(job)
    return waiting, running


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _failed(job: dict, error: str) -> dict:
    state = {**job["cell"], "run_dir": job.get("run_dir"), "status": "failed", "error": error}
    state["finished_at"] = _now()
    _write_json(Path(job["state_path"]), state)
    return state


def _outcome(result: Callable[[], dict], job: dict) -> dict:
    """The state a finished job returned, or a failed state when the job itself died."""
    try:
        return result()
    except Exception as e:
        return _failed(job, f"job died: {type(e).__name__}: {e}".splitlines()[0])


# -- the sweep ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Planned:
    """A cell with its resolved run (or the error that stopped it being planned)."""

    cell: Cell
    overrides: list[str]
    run_dir: Path | None = None
    finished: bool = False
    dev_lower_is_better: bool = True
    error: str | None = None


class Sweep:
    """The cells of a sweep and their records (see the module docstring)."""

    def __init__(self, cfg: SweepConfig):
        self.cfg = cfg
        self.dir = sweep_dir(cfg.out, cfg.name)
        self.cells, self.searched = expand(cfg)
        self.planned: dict[str, Planned] = {}
        self.lr_choice: dict[str, dict] = {}
        #: marks the cell records this invocation writes (an earlier one's are not its own)
        self.attempt = f"{socket.gethostname()}-{os.getpid()}-{time.time():.0f}"

    @property
    def lr_key(self) -> str:
        return self.cfg.lr_search.key if self.cfg.lr_search else "optim.lr"

    def state_path(self, cell: Cell) -> Path:
        return self.dir / "cells" / f"{cell.slug}.json"

    def plan(self, cell: Cell) -> Planned:
        """Resolve the cell's config and run folder (no work is done)."""
        from nestbench.config import resolve_run_config
        from nestbench.runner import Run

        overrides = with_lr(cell, self.lr_key)
        p = Planned(cell, overrides)
        try:
            cfg = resolve_run_config(
                cell.task,
                overrides,
                encoder=cell.encoder,
                mode=cell.mode,
                seed=cell.seed,
                data=self.cfg.data,
                out=self.cfg.out,
            )
            r = Run(cfg)
            p.run_dir, p.finished = r.dir, r.finished
            p.dev_lower_is_better = r.task.dev_lower_is_better
        except Exception as e:  # a bad cell is recorded, the others go on
            p.error = f"{type(e).__name__}: {e}".splitlines()[0]
        self.planned[cell.key] = p
        return p

    def job(self, p: Planned, jobs: int) -> dict:
        return {
            "cell": p.cell.to_dict(),
            "overrides": p.overrides,
            "run_dir": str(p.run_dir),
            "state_path": str(self.state_path(p.cell)),
            "plugins": list(self.cfg.plugins),
            "threads": _threads(self.cfg, jobs),
            "data": self.cfg.data,
            "out": self.cfg.out,
            "attempt": self.attempt,
        }

    def write_plan(self) -> None:
        cells = []
        for c in self.cells:
            p = self.planned.get(c.key)
            cells.append({
                **c.to_dict(),
                "run_dir": str(p.run_dir) if p and p.run_dir else None,
                "state": self.state_path(c).name,
            })  # fmt: skip
        _write_json(
            self.dir / "sweep.json",
            {
                "name": self.cfg.name,
                "config": dataclasses.asdict(self.cfg),
                "cells": cells,
                "lr_search": self.lr_choice,
            },
        )

    def run_stage(self, cells: list[Cell], progress: Callable[[dict], None]) -> None:
        """Plan ``cells``; record the finished and unplannable ones; execute the rest."""
        todo = []
        for c in cells:
            p = self.plan(c)
            if p.error:
                state = {**c.to_dict(), "status": "failed", "error": p.error, "at": "plan"}
                state["finished_at"] = _now()
                _write_json(self.state_path(c), state)
                progress(state)
            elif p.run_dir is not None and is_locked(p.run_dir):
                state = {**c.to_dict(), "run_dir": str(p.run_dir), "status": "failed"}
                state["error"] = (
                    "another process is running it now (an earlier sweep's job?); "
                    "start the sweep again when it has finished"
                )
                progress(state)  # not written: the cell's own process keeps its state file
            elif p.finished:
                state = self._read_state(c) or {}
                if state.get("status") != "done":  # finished by a plain `nestbench run`
                    state = {**c.to_dict(), "run_dir": str(p.run_dir), "status": "done"}
                state["reused"] = True
                progress(state)
            else:
                todo.append(p)
        self.write_plan()
        todo.sort(key=lambda p: (p.cell.encoder, p.cell.task, p.cell.mode, p.cell.seed))
        execute(self.cfg, [self.job(p, self.cfg.executor.jobs) for p in todo], self.dir, progress)

    def _read_state(self, cell: Cell) -> dict | None:
        return _read_json(self.state_path(cell))

    def choose_lrs(self) -> dict[str, dict]:
        """For each searched group: every point's dev value and the best (first among ties)."""
        from nestbench.result import ResultError, RunResult

        for group, grid in self.searched.items():
            points = []
            for c in self.cells:
                if c.group != group or c.lr is None or c.stage != 1:
                    continue
                p = self.planned.get(c.key)
                entry = {"lr": c.lr, "run_dir": str(p.run_dir) if p and p.run_dir else None}
                try:
                    r = RunResult.read(p.run_dir / "result.json")
                    entry["dev"] = dev_value(r)
                    entry["dev_metric"] = r.dev_metric or r.primary_metric
                except (ResultError, AttributeError, TypeError, KeyError, IndexError, ValueError):
                    entry["dev"] = None
                points.append(entry)
            scored = [e for e in points if e["dev"] is not None and math.isfinite(e["dev"])]
            key = "/".join(group[1:2] + group[:1] + group[2:])  # task/encoder/mode
            choice = {"grid": grid, "points": points, "key": self.lr_key, "chosen": None}
            if scored:
                lower = next(
                    self.planned[c.key].dev_lower_is_better
                    for c in self.cells
                    if c.group == group and c.key in self.planned
                )
                pick = (min if lower else max)(scored, key=lambda e: e["dev"])
                choice |= {
                    "chosen": pick["lr"],
                    "dev_metric": pick["dev_metric"],
                    "dev_lower_is_better": lower,
                }
            self.lr_choice[key] = choice
        _write_json(self.dir / "lr_search.json", self.lr_choice)
        return self.lr_choice

    def stage_two(self) -> tuple[list[Cell], list[Cell]]:
        """(cells to run at their group's chosen lr, cells whose group has no choice)."""
        ready, blocked = [], []
        for c in self.cells:
            if c.stage != 2:
                continue
            key = f"{c.task}/{c.encoder}/{c.mode}"
            lr = self.lr_choice.get(key, {}).get("chosen")
            if lr is None:
                blocked.append(c)
            else:
                ready.append(dataclasses.replace(c, lr=float(lr)))
        return ready, blocked


def dev_value(result) -> float:
    """The dev metric of the epoch a run kept (its ``best_epoch``)."""
    metric = result.dev_metric or result.primary_metric
    rows = [h for h in result.dev_history if metric in h]
    if result.best_epoch is not None:
        rows = [h for h in rows if h.get("epoch") == result.best_epoch] or rows
    return float(rows[0][metric])


def run_sweep(cfg: SweepConfig, echo: Callable[[str], None] = print) -> dict:
    """Run (or resume) a sweep; returns its summary (``failed`` non-empty when cells failed)."""
    from nestbench.training import attach_log, detach_log

    call_plugins(cfg.plugins)
    sweep = Sweep(cfg)
    sweep.dir.mkdir(parents=True, exist_ok=True)
    handler = attach_log(sweep.dir / "sweep.log")
    t0 = time.perf_counter()
    total = len(sweep.cells)
    seen: list[dict] = []

    def progress(state: dict) -> None:
        seen.append(state)
        if state["status"] == "done" and state.get("reused"):
            what = "done before"
        elif state["status"] == "done":
            what = f"done in {state.get('seconds', 0):.0f} s"
        else:
            what = f"FAILED: {state.get('error')}"
        line = f"[{len(seen)}/{total}] {state['key']}: {what}"
        log.info(line)
        echo(line)

    try:
        echo(f"sweep {cfg.name}: {total} runs, records in {sweep.dir}")
        sweep.run_stage([c for c in sweep.cells if c.stage == 1], progress)
        if sweep.searched:
            for key, choice in sweep.choose_lrs().items():
                tried = ", ".join(
                    f"{e['lr']:g}: " + ("failed" if e["dev"] is None else f"{e['dev']:.4g}")
                    for e in choice["points"]
                )
                echo(f"lr search {key}: {tried} -> {choice['chosen']}")
            ready, blocked = sweep.stage_two()
            for c in blocked:
                state = {**c.to_dict(), "status": "failed", "finished_at": _now()}
                state["error"] = "no point of its learning-rate search finished"
                _write_json(sweep.state_path(c), state)
                progress(state)
            sweep.run_stage(ready, progress)
        sweep.write_plan()
    finally:
        detach_log(handler)
    failed = [s for s in seen if s["status"] != "done"]
    summary = {
        "name": cfg.name,
        "runs": total,
        "done": sum(s["status"] == "done" for s in seen),
        "reused": sum(bool(s.get("reused")) for s in seen),
        "failed": [{"key": s["key"], "error": s.get("error")} for s in failed],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "finished_at": _now(),
    }
    _write_json(sweep.dir / "summary.json", summary)
    echo(
        f"sweep {cfg.name}: {summary['done']} of {total} done ({summary['reused']} done before), "
        f"{len(failed)} failed, {summary['wall_seconds']:.0f} s"
    )
    for f in summary["failed"]:
        echo(f"  failed {f['key']}: {f['error']}")
    return summary


# -- status ------------------------------------------------------------------------------------


def sweep_status(folder: Path) -> list[dict]:
    """Every cell of the sweep recorded in ``folder`` with its status: done (a result exists),
    running (its process holds the run folder's lock), failed, or left (not started, or
    interrupted: recorded as running but no process holds it)."""
    folder = Path(folder)
    try:
        plan = json.loads((folder / "sweep.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SweepError(f"{folder}: no readable sweep.json ({e}); has the sweep started?") from e
    rows = []
    for c in plan["cells"]:
        try:
            state = json.loads((folder / "cells" / c["state"]).read_text())
        except (OSError, json.JSONDecodeError):
            state = {}
        run_dir = state.get("run_dir") or c.get("run_dir")
        status = state.get("status", "left")
        if run_dir and (Path(run_dir) / "result.json").is_file():
            status = "done"
        elif run_dir and is_locked(Path(run_dir)):
            status = "running"
        elif status == "running" and not _alive(state.get("pid"), state.get("host")):
            status = "left"  # interrupted
            state["interrupted"] = True
        elif status == "done":  # its result is gone
            status = "left"
        rows.append({
            "key": c["key"],
            "status": status,
            "started_at": state.get("started_at", ""),
            "finished_at": state.get("finished_at", ""),
            "seconds": state.get("seconds"),
            "error": state.get("error", "") if status == "failed" else "",
            "interrupted": bool(state.get("interrupted")),
            "run_dir": run_dir,
        })  # fmt: skip
    return rows


def _alive(pid, host) -> bool:
    """Whether process ``pid`` runs on this host (unknown elsewhere: False)."""
    if not pid or host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def format_status(name: str, rows: list[dict]) -> str:
    counts = {k: sum(r["status"] == k for r in rows) for k in ("done", "running", "failed", "left")}
    done_s = sum(r["seconds"] or 0 for r in rows if r["status"] == "done")
    lines = [
        f"sweep {name}: " + ", ".join(f"{v} {k}" for k, v in counts.items())
        + f" of {len(rows)}; {done_s / 60:.1f} min in finished runs"
    ]  # fmt: skip
    width = max((len(r["key"]) for r in rows), default=10)
    for r in rows:
        when = r["finished_at"] or r["started_at"]
        secs = f"{r['seconds']:.0f} s" if r["seconds"] is not None else ""
        extra = r["error"] or ("interrupted" if r["interrupted"] else "")
        lines.append(
            f"  {r['key']:<{width}}  {r['status']:<7}  {secs:>7}  {when}  {extra}".rstrip()
        )
    return "\n".join(lines)
