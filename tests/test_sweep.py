"""`nestbench sweep`: resume after a kill with no finished run redone, failures isolated and
reported, the learning-rate search choosing the best dev point, and the executors (worker
processes sharing one cache fill, submitit's local executor)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from nestbench.cli import main
from nestbench.result import RunResult
from nestbench.sweep import dev_value, run_sweep, sweep_dir, sweep_status
from nestbench.sweep_config import ConfigError, expand, load_sweep, lr_grid
from tests import toy_tasks

ROOT = Path(__file__).resolve().parents[1]
SPECTRAL = "tests.toy_encoders:SpectralEncoder"


registered = pytest.fixture(scope="module", autouse=True)(toy_tasks.registered)


@pytest.fixture(scope="module")
def utt_folder(tmp_path_factory):
    return toy_tasks.make_utt_folder(tmp_path_factory.mktemp("utt"))


def _sweep_file(tmp_path, data, seeds, epochs=2, **extra) -> Path:
    cfg = {
        "name": "toy",
        "out": str(tmp_path / "runs"),
        "data": str(data),
        "grids": [
            {"encoders": [SPECTRAL], "tasks": ["toy_utt"], "modes": ["frozen"], "seeds": seeds}
        ],
        "overrides": [
            "trainer.progress=false",
            f"trainer.max_epochs={epochs}",
            "trainer.batch_size=8",
            "trainer.patience=50",
            "optim.lr=0.05",
            f"cache.root={tmp_path / 'cache'}",
        ],
        "plugins": ["tests.toy_tasks:register"],
        **extra,
    }
    if "lr_search" in extra:  # a sweep's own lr override would stop the search
        cfg["overrides"].remove("optim.lr=0.05")
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _results(tmp_path) -> dict[Path, tuple[int, str]]:
    return {
        p: (p.stat().st_mtime_ns, p.read_text())
        for p in (tmp_path / "runs" / "toy_utt").glob("*/result.json")
    }


def test_a_killed_sweep_resumes_and_runs_every_cell_exactly_once(tmp_path, utt_folder):
    path = _sweep_file(tmp_path, utt_folder, seeds=[0, 1, 2, 3], epochs=4)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NESTBENCH_DEBUG": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nestbench.cli", "sweep", str(path)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    try:
        while len(_results(tmp_path)) < 1 and time.monotonic() < deadline:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _results(tmp_path)
    assert 1 <= len(before) < 4, f"{len(before)} runs finished before the kill"

    rows = sweep_status(sweep_dir(tmp_path / "runs", "toy"))
    assert sum(r["status"] == "done" for r in rows) == len(before)
    assert {r["status"] for r in rows} <= {"done", "left"}  # the killed run is not "running"

    summary = run_sweep(load_sweep(str(path)), echo=lambda s: None)
    after = _results(tmp_path)
    assert len(after) == 4 and summary["done"] == 4 and not summary["failed"]
    assert summary["reused"] == len(before)
    for p, stamp in before.items():
        assert after[p] == stamp, f"{p} was redone"
    seeds = sorted(RunResult.read(p).seed for p in after)
    assert seeds == [0, 1, 2, 3]
    assert all(r["status"] == "done" for r in sweep_status(sweep_dir(tmp_path / "runs", "toy")))


def test_a_failing_cell_does_not_stop_the_others_and_is_reported(tmp_path, utt_folder):
    path = _sweep_file(
        tmp_path,
        utt_folder,
        seeds=[0, 1],
        epochs=1,
        cells=[{"match": {"seed": 1, "encoder": SPECTRAL}, "overrides": ["trainer.batch_size=0"]}],
    )
    cfg = yaml.safe_load(path.read_text())
    cfg["grids"][0]["encoders"].append("tests.toy_encoders:not_an_encoder")
    path.write_text(yaml.safe_dump(cfg))
    res = CliRunner().invoke(main, ["sweep", str(path)])
    assert res.exit_code == 1, res.output
    summary = json.loads((sweep_dir(tmp_path / "runs", "toy") / "summary.json").read_text())
    failed = {f["key"]: f["error"] for f in summary["failed"]}
    bad_seed = f"toy_utt/{SPECTRAL}/frozen/s1"
    assert bad_seed in failed and "trainer.batch_size" in failed[bad_seed]  # at planning
    broken = [k for k in failed if "not_an_encoder" in k]
    assert len(broken) == 2 and all(failed[k] for k in broken)  # at run time
    assert summary["done"] == 1 and len(_results(tmp_path)) == 1
    assert "failed toy_utt" in res.output
    rows = {r["key"]: r for r in sweep_status(sweep_dir(tmp_path / "runs", "toy"))}
    assert rows[bad_seed]["status"] == "failed" and rows[bad_seed]["error"]
    assert rows[f"toy_utt/{SPECTRAL}/frozen/s0"]["status"] == "done"
    status = CliRunner().invoke(main, ["sweep", "status", str(path)])
    assert status.exit_code == 0 and "1 done, 0 running, 3 failed, 0 left of 4" in status.output


def test_the_lr_search_chooses_the_best_dev_point_and_runs_the_other_seeds_there(
    tmp_path, utt_folder
):
    grid = [1e-6, 3e-3, 0.05]
    path = _sweep_file(tmp_path, utt_folder, seeds=[0, 1], epochs=3, lr_search={"grid": grid})
    summary = run_sweep(load_sweep(str(path)), echo=lambda s: None)
    assert summary["done"] == 4 and not summary["failed"]
    search = json.loads((sweep_dir(tmp_path / "runs", "toy") / "lr_search.json").read_text())
    (choice,) = search.values()
    assert [p["lr"] for p in choice["points"]] == grid
    # recompute the dev values from the results themselves
    devs = {}
    for p in choice["points"]:
        r = RunResult.read(Path(p["run_dir"]) / "result.json")
        assert r.config["optim"]["lr"] == p["lr"] and r.seed == 0
        hist = {h["epoch"]: h[r.dev_metric] for h in r.dev_history}
        devs[p["lr"]] = hist[r.best_epoch]
        assert p["dev"] == pytest.approx(devs[p["lr"]]) == dev_value(r)
    best = max(devs, key=devs.get)  # accuracy: higher is better; the first of ties
    assert choice["chosen"] == best and devs[best] > devs[1e-6]
    seed1 = [RunResult.read(p) for p in _results(tmp_path) if RunResult.read(p).seed == 1]
    assert len(seed1) == 1 and seed1[0].config["optim"]["lr"] == best
    # a rerun does nothing
    again = run_sweep(load_sweep(str(path)), echo=lambda s: None)
    assert again["reused"] == 4


def test_worker_processes_share_one_cache_fill(tmp_path, utt_folder):
    path = _sweep_file(tmp_path, utt_folder, seeds=[0, 1], epochs=1)
    summary = run_sweep(load_sweep(str(path), ["executor.jobs=2"]), echo=lambda s: None)
    assert summary["done"] == 2 and not summary["failed"]
    filled = [RunResult.read(p).timings_s["cache_audio"] for p in _results(tmp_path)]
    assert sorted(v > 0 for v in filled) == [False, True], filled  # one run encoded the audio


def test_submitit_local_executor_runs_the_cells(tmp_path, utt_folder):
    path = _sweep_file(tmp_path, utt_folder, seeds=[0, 1], epochs=1)
    summary = run_sweep(
        load_sweep(str(path), ["executor.name=submitit-local"]), echo=lambda s: None
    )
    assert summary["done"] == 2 and not summary["failed"], summary
    assert len(_results(tmp_path)) == 2
    assert any((sweep_dir(tmp_path / "runs", "toy") / "submitit").iterdir())


def test_sweep_file_errors_name_the_key(tmp_path, utt_folder):
    path = _sweep_file(tmp_path, utt_folder, seeds=[0])
    with pytest.raises(ConfigError, match="executor.name"):
        load_sweep(str(path), ["executor.name=ssh"])
    with pytest.raises(ConfigError, match="grids"):
        load_sweep(str(path), ["grids=[]"])
    with pytest.raises(ConfigError, match="lr_search.grid"):
        load_sweep(str(path), ["lr_search.grid=[0.1,-1]"])
    res = CliRunner().invoke(main, ["sweep", str(tmp_path / "nope.yaml")])
    assert res.exit_code == 1 and "config file not found" in res.output
    assert lr_grid({"low": 1e-4, "high": 1e-2, "points": 3}) == [1e-4, 1e-3, 1e-2]


def test_grids_expand_with_cell_overrides_and_search_stages(tmp_path, utt_folder):
    path = _sweep_file(
        tmp_path,
        utt_folder,
        seeds=[0, 1],
        cells=[{"match": {"seed": [1]}, "overrides": ["trainer.max_epochs=5"]}],
        lr_search={"grid": [1e-3, 1e-2], "modes": ["finetune"]},
    )
    cfg = load_sweep(str(path))
    cfg.grids[0].modes = ["frozen", "finetune"]
    cells, searched = expand(cfg)
    keys = sorted(c.key for c in cells)
    assert len(cells) == 2 + 2 + 1  # frozen seeds 0, 1; finetune lr points; finetune seed 1
    assert f"toy_utt/{SPECTRAL}/finetune/s0/lr=0.01" in keys
    assert list(searched.values()) == [[1e-3, 1e-2]]
    s1 = [c for c in cells if c.seed == 1]
    assert all(c.overrides[-1] == "trainer.max_epochs=5" for c in s1)
    assert {c.stage for c in s1 if c.mode == "finetune"} == {2}


def test_a_worker_that_dies_fails_its_own_cell_only(tmp_path, utt_folder):
    path = _sweep_file(tmp_path, utt_folder, seeds=[0, 1], epochs=1)
    cfg = yaml.safe_load(path.read_text())
    cfg["grids"][0]["encoders"].append("tests.toy_encoders:dies_on_load")
    path.write_text(yaml.safe_dump(cfg))
    summary = run_sweep(load_sweep(str(path), ["executor.jobs=2"]), echo=lambda s: None)
    failed = {f["key"]: f["error"] for f in summary["failed"]}
    assert sorted(failed) == [
        f"toy_utt/tests.toy_encoders:dies_on_load/frozen/s{i}" for i in (0, 1)
    ]
    assert all("worker process died" in e for e in failed.values())
    assert summary["done"] == 2 and len(_results(tmp_path)) == 2


def test_a_cell_another_process_is_running_is_left_to_it(tmp_path, utt_folder):
    from nestbench.lock import run_lock
    from nestbench.sweep import Sweep

    path = _sweep_file(tmp_path, utt_folder, seeds=[0, 1], epochs=1)
    cfg = load_sweep(str(path))
    busy = Sweep(cfg).plan(Sweep(cfg).cells[0]).run_dir
    with run_lock(busy):  # as a job of an earlier sweep still running would hold it
        summary = run_sweep(cfg, echo=lambda s: None)
        rows = {r["key"]: r["status"] for r in sweep_status(sweep_dir(tmp_path / "runs", "toy"))}
    (failed,) = summary["failed"]
    assert "another process is running it" in failed["error"]
    assert summary["done"] == 1 and not (busy / "result.json").exists()
    assert rows[failed["key"]] == "running"


def test_the_committed_benchmark_sweep_expands_to_its_forty_runs():
    cells, searched = expand(load_sweep("embedded"))
    assert len(cells) == 40 and not searched
    frozen = [c for c in cells if c.mode == "frozen"]
    assert {c.encoder for c in frozen} == {"fbank", "nest-embedded-random", "nest-embedded"}
    assert {c.seed for c in frozen} == {0, 1, 2} and len(frozen) == 36
    tuned = {c.task: c.overrides[-1] for c in cells if c.mode == "finetune"}
    assert tuned == {
        "sv": "trainer.max_epochs=4",
        "asr": "trainer.max_epochs=6",
        "diar": "trainer.max_epochs=6",
        "slu": "trainer.max_epochs=8",
    }
    assert all("cache.root=results/cache" in c.overrides for c in cells)
