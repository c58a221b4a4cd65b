"""`nestbench leaderboard`: its numbers are the means of the result.json values they come from,
the paired test flags a clearly different pair and not two identical ones, the SUPERB-style
score follows its definition, and odd inputs (other schemas, duplicates, missing cells, several
configurations) are reported rather than merged."""

import json
import math
import shutil
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats

from nestbench.cli import main
from nestbench.leaderboard import Leaderboard, render
from nestbench.metrics.base import ItemRows
from nestbench.metrics.paired import paired_bootstrap, read_items
from nestbench.result import RunResult
from tests import toy_tasks

SPECTRAL = "tests.toy_encoders:SpectralEncoder"
COMMON = ["trainer.progress=false", "trainer.batch_size=8", "trainer.patience=50"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """toy_utt with one encoder in three configurations: trained (seeds 0, 1), the same with a
    setting that changes nothing (seeds 0, 1) and untrained (optim.lr=0, seed 0)."""
    toy_tasks.register()
    root = tmp_path_factory.mktemp("lb")
    data = toy_tasks.make_utt_folder(root / "utt")
    made = {}
    for name, extra, seeds in (
        ("trained", ["optim.lr=0.05"], [0, 1]),
        ("same", ["optim.lr=0.05", "trainer.log_every_n_steps=5"], [0, 1]),
        ("untrained", ["optim.lr=0"], [0]),
    ):
        for seed in seeds:
            r, _ = toy_tasks.run_toy(
                "toy_utt", root, data, SPECTRAL, COMMON, *extra, f"seed={seed}", epochs=4
            )
            made[(name, seed)] = r.dir
    yield root / "runs", made
    from nestbench.task import unregister_task

    for name in toy_tasks.TOY_TASKS:
        unregister_task(name)


def _values(run_dir: Path, split: str = "test_a") -> float:
    return json.loads((run_dir / "result.json").read_text())["metrics"][split]["accuracy"]["value"]


def _row(board: dict, config_part: str, split: str = "test_a") -> dict:
    rows = board["tables"]["toy_utt"][split]["rows"]
    (row,) = [r for r in rows if config_part in r["config"]]
    return row


def test_numbers_are_the_means_of_the_results_they_come_from(runs):
    folder, made = runs
    board = Leaderboard.from_paths([folder], n_resamples=500).to_dict()
    for split in ("test_a", "test_b"):
        trained = _row(board, "optim.lr=0.05, trainer.log_every_n_steps=10", split)
        vals = [_values(made[("trained", s)], split) for s in (0, 1)]
        assert trained["n"] == 2 and trained["seeds"] == [0, 1]
        assert trained["mean"] == pytest.approx(statistics.mean(vals))
        assert trained["std"] == pytest.approx(statistics.stdev(vals))
        half = stats.t.ppf(0.975, 1) * statistics.stdev(vals) / math.sqrt(2)
        assert trained["ci95"] == pytest.approx(
            [statistics.mean(vals) - half, statistics.mean(vals) + half]
        )
        untrained = _row(board, "optim.lr=0.0,", split)
        result = json.loads((made[("untrained", 0)] / "result.json").read_text())
        assert untrained["mean"] == result["metrics"][split]["accuracy"]["value"]
        assert untrained["ci95"] == result["metrics"][split]["accuracy"]["ci95"]
        assert untrained["ci_kind"] == "items"
    assert (
        trained["parameters"]
        == json.loads((made[("trained", 0)] / "result.json").read_text())["encoder_info"][
            "parameters"
        ]
    )


def test_per_item_files_recompute_the_reported_values(runs):
    _, made = runs
    for run_dir in made.values():
        result = json.loads((run_dir / "result.json").read_text())
        for split in ("test_a", "test_b"):
            items = read_items(run_dir / f"{split}_items.json")
            assert items["accuracy"].value() == pytest.approx(
                result["metrics"][split]["accuracy"]["value"]
            )
            assert len(items["accuracy"].rows) == 12


def test_the_paired_test_flags_a_clear_difference_and_not_identical_runs(runs):
    folder, made = runs
    trained = _values(made[("trained", 0)])
    untrained = _values(made[("untrained", 0)])
    assert trained - untrained > 30, "the toy must separate trained from untrained"
    assert _values(made[("same", 0)]) == trained
    board = Leaderboard.from_paths([folder], n_resamples=1000).to_dict()
    pairs = board["tables"]["toy_utt"]["test_a"]["pairs"]
    assert len(pairs) == 3

    def pair(a, b):
        (p,) = [p for p in pairs if {a, b} == {p["a"].split("(")[1], p["b"].split("(")[1]}]
        return p

    clear = pair(
        "optim.lr=0.0, trainer.log_every_n_steps=10)",
        "optim.lr=0.05, trainer.log_every_n_steps=10)",
    )
    assert clear["significant"] and clear["p_value"] < 0.05
    same = pair(
        "optim.lr=0.05, trainer.log_every_n_steps=10)",
        "optim.lr=0.05, trainer.log_every_n_steps=5)",
    )
    assert not same["significant"] and same["p_value"] == 1.0 and same["delta"] == 0.0


def test_paired_bootstrap_on_made_up_items():
    rng = np.random.default_rng(0)
    correct_a = (rng.random(300) < 0.8).astype(float)
    correct_b = (rng.random(300) < 0.6).astype(float)

    def rows(c):
        return ItemRows(
            "nestbench.metrics.base:Accuracy",
            ("correct", "total"),
            np.c_[c, np.ones_like(c)],
            100.0,
        )

    test = paired_bootstrap([rows(correct_a)], [rows(correct_b)], n_resamples=1000)
    assert test.significant() and test.delta == pytest.approx(
        100 * (correct_a.mean() - correct_b.mean())
    )
    assert test.ci95[0] < test.delta < test.ci95[1]
    assert paired_bootstrap([rows(correct_a)], [rows(correct_a)]).p_value == 1.0
    # SV trials: EER resampled within target / non-target trials
    s = np.r_[rng.normal(1, 1, 200), rng.normal(-1, 1, 800)]
    y = np.r_[np.ones(200), np.zeros(800)]
    eer_rows = ItemRows("nestbench.metrics.sv:TrialEER", ("score", "target"), np.c_[s, y], 100.0)
    noisy = ItemRows(
        "nestbench.metrics.sv:TrialEER",
        ("score", "target"),
        np.c_[s + rng.normal(0, 2, 1000), y],
        100.0,
    )
    from nestbench.metrics.sv import eer

    assert eer_rows.value() == pytest.approx(100 * eer(s, y))
    assert paired_bootstrap([noisy], [eer_rows], n_resamples=500).significant()
    with pytest.raises(ValueError, match="different items"):
        paired_bootstrap([rows(correct_a)], [rows(correct_b[:100])])


def _fake(folder: Path, task, encoder, seed, value, lower=True, data="d1", mode="frozen", **kw):
    metric = "eer" if task == "sv" else "wer"
    r = RunResult(
        task=task,
        encoder=encoder,
        mode=mode,
        seed=seed,
        run_id=f"{encoder}-{task}-{mode}-s{seed}-{kw.get('lr', 1)}",
        primary_metric=metric,
        lower_is_better=lower,
        metrics={"test": {metric: {"value": value, "ci95": [value - 1, value + 1]}}},
        eval_splits=["test"],
        config={"optim": {"lr": kw.get("lr", 1)}, "seed": seed},
        inputs={"data": data},
        finished_at=kw.get("finished_at", "2026-01-01T00:00:00"),
    )
    d = folder / task / r.run_id
    d.mkdir(parents=True, exist_ok=True)
    r.write(d / "result.json")
    return d


def test_superb_score_and_reports_of_what_does_not_fit(tmp_path):
    for seed in (0, 1):
        _fake(tmp_path, "sv", "fbank", seed, 20.0)
        _fake(tmp_path, "sv", "x", seed, 15.0)
        _fake(tmp_path, "sv", "y", seed, 10.0)
        _fake(tmp_path, "asr", "fbank", seed, 90.0)
        _fake(tmp_path, "asr", "x", seed, 80.0)
        _fake(tmp_path, "asr", "y", seed, 85.0)
    _fake(tmp_path, "sv", "z", 0, 12.0)  # no asr run, one seed
    dup = _fake(tmp_path, "sv", "x", 0, 15.0)
    shutil.copytree(dup, tmp_path / "copy" / dup.name)  # the same run id twice
    _fake(tmp_path, "asr", "y", 0, 70.0, lr=2)  # a second configuration
    bad = tmp_path / "sv" / "old" / "result.json"
    bad.parent.mkdir(parents=True)
    bad.write_text(json.dumps({"schema": 99, "task": "sv"}))
    lb = Leaderboard.from_paths([tmp_path], n_resamples=100)
    board = lb.to_dict()
    superb = {s["row"]: s for s in board["superb"]}
    assert superb["fbank frozen"]["score"] == pytest.approx(0.0)
    # sv: best 10 (y); asr: best 70 (y at lr 2)
    assert superb["x frozen"]["score"] == pytest.approx(1000 * np.mean([0.5, 0.5]))
    assert superb["z frozen"]["tasks"] == ["sv"] and not superb["z frozen"]["covers_all"]
    assert superb["z frozen"]["score"] == pytest.approx(1000 * 0.8)
    problems = "\n".join(lb.problems)
    assert "schema 99" in problems and "duplicate run" in problems
    assert "missing: z frozen has no run of asr" in problems
    assert "asr/y/frozen: 2 configurations (differing in optim.lr)" in problems
    assert "sv: unequal seeds" in problems
    # the means are the results' values
    rows = {r["encoder"] + r["config"]: r for r in board["tables"]["sv"]["test"]["rows"]}
    assert rows["x"]["mean"] == 15.0 and rows["x"]["n"] == 2 and rows["x"]["std"] == 0.0
    assert [r["encoder"] for r in board["tables"]["sv"]["test"]["rows"]][0] == "y"  # best first
    _fake(tmp_path, "asr", "x", 2, 80.0, data="other")
    assert "rows scored on 2 different data sets" in "\n".join(
        Leaderboard.from_paths([tmp_path], n_resamples=100).problems
    )


def test_formats_and_the_command(runs, tmp_path):
    folder, _ = runs
    out = tmp_path / "board.md"
    res = CliRunner().invoke(
        main, ["leaderboard", str(folder), "--out", str(out), "--resamples", "200"]
    )
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert "| encoder | mode | seeds |" in text and "Paired bootstrap" in text
    plots = sorted((tmp_path / "plots").glob("*.png"))
    assert plots and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)
    assert f"(plots/{plots[0].name})" in text
    csv_text, lb = render([folder], "csv", n_resamples=100)
    frame = pd.read_csv(__import__("io").StringIO(csv_text))
    assert len(frame) == 2 * len(lb.rows) and set(frame["split"]) == {"test_a", "test_b"}
    data = json.loads(render([folder], "json", n_resamples=100)[0])
    assert set(data) >= {"tables", "superb", "problems", "feature_rtf"}
    page, _ = render([folder], "html", tmp_path / "page.html", tmp_path / "p2", n_resamples=100)
    assert page.count("<table") >= 3 and "data:image/png;base64," in page
    assert "http://" not in page and "https://" not in page  # opens without a network
    empty = CliRunner().invoke(main, ["leaderboard", str(tmp_path / "plots")])
    assert empty.exit_code == 1 and "no readable result.json" in empty.output


@pytest.mark.slow
def test_the_html_page_renders_in_headless_chromium(runs, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    folder, _ = runs
    page = tmp_path / "page.html"
    render([folder], "html", page, tmp_path / "plots", n_resamples=100)
    # click the first header of the first table from a script appended to the page, then dump
    script = (
        "<script>var th=document.querySelector('table.sortable th');th.click();th.click();"
        "document.body.dataset.sorted=th.dataset.order;</script>"
    )
    page.write_text(page.read_text().replace("</body>", script + "</body>"))
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert dom.count("<table") >= 3 and dom.count("<tr>") >= 6
    assert 'data-sorted="desc"' in dom  # the sorting script ran
    assert "toy_utt" in dom and "<img" in dom


def test_higher_is_better_rows_other_splits_and_damaged_items_are_handled(tmp_path, runs):
    for seed in (0, 1):
        _fake(tmp_path, "slu", "fbank", seed, 20.0, lower=False)
        _fake(tmp_path, "slu", "x", seed, 60.0, lower=False)
        _fake(tmp_path, "slu", "y", seed, 40.0, lower=False)
    odd = _fake(tmp_path, "slu", "z", 0, 30.0, lower=False)
    data = json.loads((odd / "result.json").read_text())
    data["metrics"] = {"other": data["metrics"]["test"]}
    data["eval_splits"] = ["other"]
    (odd / "result.json").write_text(json.dumps(data))
    nan = _fake(tmp_path, "slu", "w", 0, float("nan"), lower=False)
    lb = Leaderboard.from_paths([tmp_path], n_resamples=100)
    board = lb.to_dict()
    superb = {s["row"]: s["score"] for s in board["superb"]}
    assert superb["x frozen"] == pytest.approx(1000.0) and superb["y frozen"] == pytest.approx(
        500.0
    )
    assert superb["fbank frozen"] == pytest.approx(0.0) and superb["w frozen"] is None
    assert set(board["tables"]["slu"]) == {"test", "other"}
    order = [r["encoder"] for r in board["tables"]["slu"]["test"]["rows"]]
    assert order[:3] == ["x", "y", "fbank"] and order[-1] == "w"  # higher first, NaN last
    assert "slu: z frozen has no test split" in "\n".join(lb.problems)
    assert nan.exists()
    # a damaged per-item file: that pair is not tested, the board still renders
    folder, made = runs
    (made[("untrained", 0)] / "test_a_items.json").write_text("{not json")
    board = Leaderboard.from_paths([folder], n_resamples=100).to_dict()
    errors = [p.get("error", "") for p in board["tables"]["toy_utt"]["test_a"]["pairs"]]
    assert sum("not a per-item file" in e for e in errors) == 2
