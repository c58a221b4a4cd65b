"""nestbench run --task sv end to end on a toy encoder: cache reuse, learning layer weights,
result files, skipping finished runs, errors."""

import json
import signal

import pytest
from click.testing import CliRunner

from nestbench.cli import main
from nestbench.config import ConfigError
from nestbench.metrics.paired import read_items
from nestbench.runner import run
from nestbench.task import TaskError
from tests import toy_encoders
from tests.sv_helpers import SMALL_SV, make_nuisance_sv_folder, make_sv_folder


class CountingEncoder(toy_encoders.FramesEncoder):
    """Counts utterances seen across instances (class-level, since the runner builds its own)."""

    total = 0

    def forward(self, wav, wav_lens):
        CountingEncoder.total += wav.shape[0]
        return super().forward(wav, wav_lens)


def counting_encoder(scale: float = 0.0):
    enc = CountingEncoder()
    if scale:
        import torch

        with torch.no_grad():
            enc.proj.weight.mul_(scale)
    return enc


@pytest.fixture(scope="module")
def sv_data(tmp_path_factory):
    return make_sv_folder(tmp_path_factory.mktemp("sv"))


def _run(
    tmp_path,
    data,
    *extra,
    seed=0,
    force=False,
    encoder="tests.test_run_sv:counting_encoder",
    mode="frozen",
):
    return run(
        "sv",
        [*SMALL_SV, f"cache.root={tmp_path / 'cache'}", *extra],
        force=force,
        encoder=encoder,
        mode=mode,
        data=str(data),
        seed=seed,
        out=str(tmp_path / "runs"),
    )


def test_frozen_cache_used_once_across_epochs_and_seeds(tmp_path, sv_data):
    n_utts = 6 * 4 + 2 * 3 * 4
    CountingEncoder.total = 0
    r, result = _run(tmp_path, sv_data)
    assert CountingEncoder.total == n_utts  # 3 epochs, 1 encoder call per utterance
    assert result.config["trainer"]["max_epochs"] == 3
    r2, result2 = _run(tmp_path, sv_data, seed=1)
    assert CountingEncoder.total == n_utts  # another seed: all features from the cache
    assert r2.id != r.id
    _run(tmp_path, sv_data, "encoder.kwargs={scale: 2.0}")
    assert CountingEncoder.total == 2 * n_utts  # a changed encoder rebuilds the cache

    files = {p.name for p in r.dir.iterdir()}
    assert {"result.json", "test_scores.txt", "run.log", "config.yaml"} <= files
    saved = json.loads(r.result_path.read_text())
    assert saved["schema"] == 1 and saved["eval_splits"] == ["test"]
    assert saved["artifacts"] == {"test_scores": "test_scores.txt", "test_items": "test_items.json"}
    trials = read_items(r.dir / "test_items.json")["eer"]  # the trials the EER is computed from
    assert trials.value() == pytest.approx(saved["metrics"]["test"]["eer"]["value"])
    for key in (
        "task",
        "encoder",
        "mode",
        "seed",
        "metrics",
        "layer_weights",
        "timings_s",
        "config",
        "versions",
        "git_revision",
    ):
        assert key in saved
    m = saved["metrics"]["test"]
    eer = m["eer"]
    assert 0 <= eer["value"] <= 100 and eer["ci95"][0] <= eer["value"] <= eer["ci95"][1]
    assert {"min_dcf_0.01", "min_dcf_0.05", "eer_asnorm"} <= set(m)
    assert all(set(v) <= {"value", "ci95"} for v in m.values())
    lines = (r.dir / "test_scores.txt").read_text().splitlines()
    assert lines[0].startswith("# enroll test label score")
    assert len(lines) - 1 == m["num_trials"]["value"] == 66
    assert lines[1].split()[2] in ("0", "1")


def test_layer_weights_learn_frozen_and_finetuned(tmp_path, sv_data):
    for mode in ("frozen", "finetune"):
        _, result = _run(tmp_path, sv_data, mode=mode)
        w = result.layer_weights
        assert w["initial"] == pytest.approx([1 / 3] * 3)
        assert max(abs(a - b) for a, b in zip(w["final"], w["initial"], strict=True)) > 1e-3, mode
        assert sum(w["final"]) == pytest.approx(1.0, abs=1e-5)


def test_finished_run_is_skipped_and_force_keeps_the_old_result(tmp_path, sv_data):
    runner = CliRunner()
    args = [
        "run",
        "--task",
        "sv",
        "--encoder",
        "tests.toy_encoders:FramesEncoder",
        "--data",
        str(sv_data),
        "--out",
        str(tmp_path / "runs"),
        *SMALL_SV,
        "trainer.max_epochs=1",
        f"cache.root={tmp_path / 'cache'}",
    ]
    first = runner.invoke(main, args)
    assert first.exit_code == 0, first.output
    assert "eer" in first.output and "result:" in first.output
    assert "layer shares: " in first.output  # each layer's share of the weighted sum
    second = runner.invoke(main, args)
    assert second.exit_code == 0 and "already finished" in second.output
    forced = runner.invoke(main, [*args, "--force"])
    assert forced.exit_code == 0, forced.output
    run_dir = next((tmp_path / "runs" / "sv").iterdir())
    assert len(list(run_dir.glob("result*.json"))) == 2  # the earlier result is kept aside
    ckpts = [p.name for p in (run_dir / "checkpoints").iterdir()]
    assert ckpts == ["best.ckpt"]  # the redone run started from an empty checkpoints/
    assert json.loads((run_dir / "result.json").read_text())["checkpoint"].endswith("best.ckpt")


def test_errors_name_the_problem(tmp_path, sv_data):
    with pytest.raises(TaskError, match="unknown task 'nope'; valid tasks: .*sv"):
        run("nope", [])
    with pytest.raises(ConfigError, match="unknown config key 'trainer.max_epoch'.*max_epochs"):
        _run(tmp_path, sv_data, "trainer.max_epoch=3")
    out = CliRunner().invoke(
        main,
        [
            "run",
            "--task",
            "sv",
            "--encoder",
            "nest-gigantic",
            "--data",
            str(sv_data),
            "--out",
            str(tmp_path / "r"),
        ],
    )
    assert out.exit_code != 0 and "unknown encoder 'nest-gigantic'" in out.output
    bad = make_sv_folder(tmp_path / "bad", train_speakers=2, eval_speakers=2, utts=2)
    with open(bad / "test_trials.txt", "a") as f:
        f.write("1 spk99/u0.wav spk02/u0.wav\n")
    with pytest.raises(
        TaskError, match=r"test_trials.txt:7: trial name 'spk99/u0.wav' is in no record"
    ):
        _run(tmp_path, bad)


def test_ddp_on_two_cpu_processes(tmp_path, sv_data):
    """strategy=ddp (gloo) across 2 CPU processes: the same code path as multi-GPU runs."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        "-m",
        "nestbench.cli",
        "run",
        "--task",
        "sv",
        "--encoder",
        "tests.toy_encoders:FramesEncoder",
        "--data",
        str(sv_data),
        "--out",
        str(tmp_path / "runs"),
        *SMALL_SV,
        "trainer.max_epochs=2",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        f"cache.root={tmp_path / 'cache'}",
    ]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "Starting with 2 processes" in proc.stderr + proc.stdout
    result = json.loads(next((tmp_path / "runs" / "sv").glob("*/result.json")).read_text())
    assert result["config"]["trainer"]["devices"] == 2 and len(result["dev_history"]) == 2
    assert result["metrics"]["test"]["eer"]["value"] >= 0
    log = (next((tmp_path / "runs" / "sv").iterdir()) / "run.log").read_text()
    assert log.count("feature cache") == 1  # filled once per node (prepare_data), not per rank
    assert "48 of 72 examples computed" in log  # test examples repeat the 24 training ones


def test_interrupted_run_leaves_no_result_and_is_redone(tmp_path, sv_data, monkeypatch):
    from nestbench.model import DownstreamModel

    original = DownstreamModel.training_step

    def interrupt_in_epoch_two(self, batch, batch_idx):
        if self.current_epoch == 1:
            raise KeyboardInterrupt  # what Ctrl-C raises
        return original(self, batch, batch_idx)

    monkeypatch.setattr(DownstreamModel, "training_step", interrupt_in_epoch_two)
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            _run(tmp_path, sv_data, encoder="tests.toy_encoders:FramesEncoder")
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after an interrupt
    run_dirs = list((tmp_path / "runs" / "sv").iterdir())
    assert len(run_dirs) == 1 and not (run_dirs[0] / "result.json").exists()
    monkeypatch.setattr(DownstreamModel, "training_step", original)
    r, result = _run(tmp_path, sv_data, encoder="tests.toy_encoders:FramesEncoder")
    assert result is not None and r.dir == run_dirs[0] and r.result_path.is_file()


@pytest.fixture(scope="module")
def nuisance_data(tmp_path_factory):
    return make_nuisance_sv_folder(tmp_path_factory.mktemp("sv-nuisance"))


def _eer(tmp_path, data, *extra):
    _, result = _run(tmp_path, data, *extra, encoder="tests.toy_encoders:SpectralEncoder")
    return result.value("eer")


def test_trained_head_beats_an_untrained_one(tmp_path, nuisance_data):
    """On data where an untrained head is near chance (speakers buried under per-utterance
    nuisance), gradient training of a randomly initialised head must lower the EER."""
    random_init = ["sv.lda_init=false", "trainer.max_epochs=12"]
    untrained = _eer(tmp_path, nuisance_data, *random_init, "optim.lr=0")
    trained = _eer(tmp_path, nuisance_data, *random_init, "optim.lr=1e-2")
    assert untrained > 38, untrained  # near chance
    assert trained < untrained - 8, (trained, untrained)


def test_lda_initialisation_learns_from_the_training_speakers(tmp_path, nuisance_data):
    """With nothing trained by gradient (lr=0), the LDA-initialised stats head (the default)
    already separates unseen speakers far better than a random one, and matches the probe."""
    _, result = _run(
        tmp_path, nuisance_data, "optim.lr=0", encoder="tests.toy_encoders:SpectralEncoder"
    )
    lda = result.value("eer")
    random = _eer(tmp_path, nuisance_data, "optim.lr=0", "sv.lda_init=false")
    assert lda < random - 10, (lda, random)
    assert lda <= result.value("eer_probe") + 5


def test_ecapa_head(tmp_path, sv_data):
    _, result = _run(tmp_path, sv_data, "sv.head=ecapa", "trainer.max_epochs=1")
    assert 0 <= result.value("eer") <= 100 and result.config["sv"]["head"] == "ecapa"


def test_an_identical_run_in_progress_is_reported_or_waited_for(tmp_path, sv_data):
    import fcntl
    import os
    import threading

    from nestbench.lock import RunInProgress
    from nestbench.runner import Run, resolve_run_config

    overrides = [*SMALL_SV, f"cache.root={tmp_path / 'cache'}", "trainer.max_epochs=1"]
    explicit = dict(
        encoder="tests.toy_encoders:FramesEncoder", data=str(sv_data), out=str(tmp_path / "runs")
    )
    run_dir = Run(resolve_run_config("sv", overrides, **explicit)).dir
    run_dir.mkdir(parents=True)
    fd = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a first run in progress holds
    os.write(fd, b"pid 12345 on elsewhere\n")
    timer = threading.Timer(1.5, fcntl.flock, [fd, fcntl.LOCK_UN])  # the first run ends
    try:
        with pytest.raises(RunInProgress, match=r"another nestbench run .*pid 12345 on elsewhere"):
            run("sv", overrides, **explicit)
        assert not (run_dir / "result.json").exists() and not (run_dir / "run.log").exists()
        out = CliRunner().invoke(main, ["run", "--task", "sv", *_cli(explicit), *overrides])
        assert out.exit_code == 1 and "Error: " in out.output and "Traceback" not in out.output
        # a waiting run starts once the first one is done, and does the work once
        timer.start()
        r, result = run("sv", overrides, wait=30, **explicit)
        assert result is not None and r.finished
    finally:
        timer.cancel()
        os.close(fd)
    assert oct((run_dir / "result.json").stat().st_mode & 0o044) == oct(0o044 & ~_umask())


def _cli(explicit):
    return ["--encoder", explicit["encoder"], "--data", explicit["data"], "--out", explicit["out"]]


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_changed_inputs_make_a_new_run(tmp_path, sv_data):
    """Replacing the encoder file at the same path, or editing the trials, gives a new run id;
    the earlier result stays where it was."""
    import shutil

    from tests.test_nemo_fixtures import FIXTURE_DIR

    data = tmp_path / "data"
    shutil.copytree(sv_data, data)
    model = tmp_path / "enc.nemo"
    shutil.copy(FIXTURE_DIR / "nemo_nest_tiny" / "model.nemo", model)
    first, result = _run(tmp_path, data, "trainer.max_epochs=1", encoder=str(model))
    assert result is not None and result.inputs["encoder_files"]["spec"]
    again, skipped = _run(tmp_path, data, "trainer.max_epochs=1", encoder=str(model))
    assert skipped is None and again.id == first.id  # nothing changed: finished
    shutil.copy(FIXTURE_DIR / "nemo_nest_tiny_v24" / "model.nemo", model)  # same path, new weights
    second, result = _run(tmp_path, data, "trainer.max_epochs=1", encoder=str(model))
    assert second.id != first.id and result is not None
    lines = (data / "test_trials.txt").read_text().splitlines()
    (data / "test_trials.txt").write_text("\n".join(lines[:-1]) + "\n")  # one trial fewer
    third, result = _run(tmp_path, data, "trainer.max_epochs=1", encoder=str(model))
    assert third.id not in (first.id, second.id)
    assert result.metrics["test"]["num_trials"]["value"] == len(lines) - 1
    assert first.result_path.is_file() and second.result_path.is_file()
