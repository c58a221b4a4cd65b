"""One task of each shape through the unchanged runner, frozen and fine-tuned: an utterance
classifier with two eval splits, a per-frame labeller on long recordings (windows stitched back,
frame rate from setup) and a CTC sequence task. Trained heads beat an ``optim.lr=0`` run."""

import json

import pytest

from nestbench.runner import run
from tests import toy_tasks

ENCODER = "tests.toy_encoders:SpectralEncoder"
COMMON = [
    "trainer.progress=false",
    "trainer.batch_size=8",
    "trainer.patience=50",
    "optim.lr=0.05",
    "optim.encoder_lr=1e-3",
]


registered = pytest.fixture(scope="module", autouse=True)(toy_tasks.registered)


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {name: make(tmp_path_factory.mktemp(name)) for name, make in toy_tasks.MAKERS.items()}


def _run(tmp_path, folders, task, *extra, mode="frozen", epochs=1):
    return run(
        task,
        [*COMMON, f"trainer.max_epochs={epochs}", f"cache.root={tmp_path / 'cache'}", *extra],
        encoder=ENCODER,
        mode=mode,
        data=str(folders[task]),
        out=str(tmp_path / "runs"),
    )


@pytest.mark.parametrize("task", sorted(toy_tasks.TOY_TASKS))
@pytest.mark.parametrize("mode", ["frozen", "finetune"])
def test_each_shape_runs_one_epoch(tmp_path, folders, task, mode):
    r, result = _run(tmp_path, folders, task, mode=mode)
    cls = toy_tasks.TOY_TASKS[task]
    saved = json.loads(r.result_path.read_text())
    assert saved["schema"] == 1 and saved["eval_splits"] == list(cls.eval_splits)
    for split in cls.eval_splits:
        primary = saved["metrics"][split][cls.primary_metric]
        assert set(primary) == {"value", "ci95"}
        assert primary["ci95"][0] <= primary["value"] <= primary["ci95"][1]
    assert len(result.dev_history) == 1 and result.mode == mode


def test_windows_use_the_frame_rate_from_setup(tmp_path, folders):
    r, result = _run(tmp_path, folders, "toy_frames")
    info = r.task.info
    assert info.frame_rate == 50.0  # SpectralEncoder: 320-sample frames
    assert r.task.window == (2.0, 1.0)
    # 8 s recordings in 2 s windows every 1 s: 7 windows each (2 test recordings)
    assert result.metrics["test"]["windows"]["value"] == 14


def _primary(result, split):
    return result.metrics[split][result.primary_metric]["value"]


@pytest.mark.parametrize(
    ("task", "epochs", "margin"),
    [("toy_utt", 6, 30.0), ("toy_frames", 8, 15.0), ("toy_ctc", 15, 30.0)],
)
def test_trained_head_beats_an_untrained_one(tmp_path, folders, task, epochs, margin):
    _, trained = _run(tmp_path, folders, task, epochs=epochs)
    _, frozen = _run(tmp_path, folders, task, "optim.lr=0", epochs=1)
    for split in toy_tasks.TOY_TASKS[task].eval_splits:
        a, b = _primary(trained, split), _primary(frozen, split)
        gain = b - a if trained.lower_is_better else a - b
        assert gain > margin, (task, split, a, b)
