"""The task runs' learning-rate schedule (``optim.schedule``, ``optim.warmup_steps``)."""

import csv
import json
import math
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from nestbench.leaderboard import _config_variant
from nestbench.model import lr_factor
from nestbench.result import NEUTRAL_DEFAULTS, RunResult
from nestbench.runner import run, run_id
from tests import toy_tasks

registered = pytest.fixture(scope="module", autouse=True)(toy_tasks.registered)


def test_constant_without_warmup_has_no_scheduler():
    assert lr_factor("constant", 0, 100) is None


def test_warmup_then_constant():
    f = lr_factor("constant", 4, 100)
    assert [f(s) for s in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_cosine_runs_from_one_to_the_floor_at_the_last_step():
    f = lr_factor("cosine", 0, 11, floor=0.1)
    assert f(0) == 1.0
    assert f(5) == pytest.approx(0.1 + 0.9 * 0.5)  # half way
    assert f(10) == pytest.approx(0.1)  # the last of 11 steps
    assert f(50) == pytest.approx(0.1)  # past the end (a longer resumed run): stays there
    values = [f(s) for s in range(11)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    g = lr_factor("cosine", 2, 12)
    assert [g(0), g(1), g(2)] == [0.5, 1.0, 1.0]
    assert g(11) == pytest.approx(0.0, abs=1e-12)
    assert g(6) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 9)))


def test_a_cosine_run_decays_over_its_planned_steps(tmp_path):
    data = toy_tasks.MAKERS["toy_utt"](tmp_path / "data")
    r, result = run(
        "toy_utt",
        [
            "trainer.progress=false",
            "trainer.batch_size=8",
            "trainer.log_every_n_steps=1",
            "trainer.max_epochs=3",
            "trainer.patience=50",
            "optim.lr=0.05",
            "optim.schedule=cosine",
            f"cache.root={tmp_path / 'cache'}",
        ],
        encoder="tests.toy_encoders:SpectralEncoder",
        data=str(data),
        out=str(tmp_path / "runs"),
    )
    rows = list(csv.DictReader(open(r.dir / "logs" / "metrics.csv")))
    lrs = [(int(row["step"]), float(row["lr-AdamW/pg1"])) for row in rows if row["lr-AdamW/pg1"]]
    total = len(lrs)  # every step of the 3 epochs is logged
    assert len(result.dev_history) == 3 and [s for s, _ in lrs] == list(range(total))
    f = lr_factor("cosine", 0, total)
    assert all(lr == pytest.approx(0.05 * f(step)) for step, lr in lrs)
    assert lrs[-1][1] == pytest.approx(0.0, abs=1e-9)  # the floor (0) at the last step


def test_runs_made_before_the_schedule_keys_keep_their_ids_and_rows():
    """A config at the new keys' neutral values (constant, 0) has the run id and leaderboard
    variant of the same config without them, as finished runs were made; cosine changes both.
    The committed benchmark's run ids (results/runs) come back with the keys added."""
    old = {"encoder": {"spec": "fbank"}, "mode": "frozen", "seed": 0, "optim": {"lr": 0.1}}
    new = {**old, "optim": {"lr": 0.1, "schedule": "constant", "min_lr_ratio": 0.0}}
    cosine = {**old, "optim": {"lr": 0.1, "schedule": "cosine", "min_lr_ratio": 0.0}}
    ids = [run_id(OmegaConf.create(c), {"data": "x"}) for c in (old, new, cosine)]
    assert ids[0] == ids[1] != ids[2]

    def variant(config):
        r = RunResult.__new__(RunResult)
        r.config, r.inputs = config, {"data": "x"}
        return _config_variant(r)[0]

    assert variant(old) == variant(new) != variant(cosine)

    committed = sorted((Path(__file__).parents[1] / "results" / "runs").glob("*/*/result.json"))
    assert len(committed) == 40  # the embedded benchmark (make benchmark)
    for path in committed:
        r = json.loads(path.read_text())
        cfg = OmegaConf.create(r["config"])
        for dotted, value in NEUTRAL_DEFAULTS.items():
            OmegaConf.update(cfg, dotted, value)
        assert run_id(cfg, r["inputs"]) == r["run_id"], path
        for held in (0, 2048):  # cache.memory_mb (newer than these runs) changes no result
            OmegaConf.update(cfg, "cache.memory_mb", held)
            assert run_id(cfg, r["inputs"]) == r["run_id"], path
