"""The real-corpus path end to end: ``nestbench data prepare <corpus>`` on a fake tree in the
corpus's own layout writes the one data layout (train, dev and eval splits of its task), and
``nestbench run --task <task> --data OUT`` on that output completes, for every task that exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from nestbench.cli import main
from nestbench.data.check import check_path
from nestbench.data.layout import Splits, find_manifest, find_trials, read_splits, task_dir
from nestbench.data.manifest import read_manifest
from nestbench.task import available_tasks
from tests.data_helpers import make_librispeech, make_rttm_folder, make_slurp, make_voxceleb
from tests.sv_helpers import SMALL_SV


def _prepare_voxceleb(tmp: Path, out: Path) -> list[list[str]]:
    return [["voxceleb", str(make_voxceleb(tmp)), "--out", str(out)]]


def _prepare_librispeech(tmp: Path, out: Path) -> list[list[str]]:
    return [["librispeech", str(make_librispeech(tmp)), "--out", str(out)]]


def _prepare_rttm(tmp: Path, out: Path) -> list[list[str]]:
    return [
        ["rttm", str(make_rttm_folder(tmp / split)), "--out", str(out), "--split", split]
        for split in ("train", "dev", "test")
    ]


def _prepare_slurp(tmp: Path, out: Path) -> list[list[str]]:
    return [["slurp", str(make_slurp(tmp)), "--out", str(out)]]


#: importer -> (the task it serves, the `data prepare` invocations that import a fake tree)
IMPORTERS = {
    "voxceleb": ("sv", _prepare_voxceleb),
    "librispeech": ("asr", _prepare_librispeech),
    "rttm": ("diar", _prepare_rttm),
    "slurp": ("slu", _prepare_slurp),
}
#: Overrides that make a task's run small and fast (every task that exists has an entry).
FAST = {
    "sv": [*SMALL_SV, "trainer.max_epochs=1"],
    "asr": ["trainer.progress=false", "trainer.max_epochs=1", "asr.vocab_size=16",
            "asr.hidden_size=16", "asr.proj_dim=16", "asr.num_layers=1", "asr.bootstrap=50"],
    "diar": ["trainer.progress=false", "trainer.max_epochs=1", "diar.hidden_size=16",
             "diar.proj_dim=16", "diar.num_layers=1", "diar.bootstrap=50",
             "diar.train_seconds=2", "diar.window_seconds=3", "diar.hop_seconds=1.5"],
    "slu": ["trainer.progress=false", "trainer.max_epochs=1", "slu.vocab_size=16",
            "slu.hidden_size=16", "slu.proj_dim=16", "slu.num_layers=1", "slu.bootstrap=50",
            "slu.intent_hidden=16", "slu.upsample=4"],
}  # fmt: skip


def _prepare(importer: str, tmp: Path) -> tuple[str, Path]:
    task, invocations = IMPORTERS[importer]
    out = tmp / "data"
    for args in invocations(tmp / "src", out):
        result = CliRunner().invoke(main, ["data", "prepare", *args])
        assert result.exit_code == 0, result.output
    return task, out


@pytest.mark.parametrize("importer", sorted(IMPORTERS))
def test_prepare_writes_the_layout_every_task_reads(tmp_path, importer):
    task, out = _prepare(importer, tmp_path)
    folder = task_dir(out, task)
    splits = read_splits(folder, Splits())
    for split in ("train", splits.dev, *splits.eval):
        assert read_manifest(find_manifest(folder, split)), f"{task}/{split} is empty"
        if task == "sv" and split != "train":
            assert find_trials(folder, split).is_file()
    assert check_path(out).ok


@pytest.mark.parametrize("importer", sorted(IMPORTERS))
def test_prepare_then_run_completes(tmp_path, importer):
    task = IMPORTERS[importer][0]
    if task not in available_tasks():
        pytest.skip(f"no {task} task yet: only the layout is tested for {importer}")
    assert task in FAST, f"add fast overrides for the {task} task to FAST"
    _, out = _prepare(importer, tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "run", "--task", task, "--data", str(out), "--out", str(tmp_path / "runs"),
            "--encoder", "tests.toy_encoders:FramesEncoder",
            f"cache.root={tmp_path / 'cache'}", *FAST[task],
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (result_file,) = (tmp_path / "runs" / task).glob("*/result.json")
    doc = json.loads(result_file.read_text())
    splits = read_splits(task_dir(out, task), Splits())
    assert doc["eval_splits"] == list(splits.eval)
    assert all(s in doc["metrics"] for s in splits.eval)


def test_every_trial_list_is_an_eval_split_of_the_run(tmp_path):
    """VoxCeleb with two lists: the first is ``test``, the second its own eval split."""
    src = make_voxceleb(tmp_path / "src")
    extra = src / "hard.txt"
    extra.write_text(
        "1 id10001/aaaaaaaaaaa/00001.wav id10001/bbbbbbbbbbb/00003.wav\n"
        "0 id10001/aaaaaaaaaaa/00002.wav id10002/aaaaaaaaaaa/00001.wav\n"
    )
    out = tmp_path / "data"
    args = ["data", "prepare", "voxceleb", str(src), "--out", str(out)]
    lists = ["--trials", str(src / "veri_test2.txt"), "--trials", str(extra)]
    assert CliRunner().invoke(main, [*args, *lists]).exit_code == 0
    result = CliRunner().invoke(
        main,
        [
            "run", "--task", "sv", "--data", str(out), "--out", str(tmp_path / "runs"),
            "--encoder", "tests.toy_encoders:FramesEncoder",
            f"cache.root={tmp_path / 'cache'}", *FAST["sv"],
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (result_file,) = (tmp_path / "runs" / "sv").glob("*/result.json")
    doc = json.loads(result_file.read_text())
    assert doc["eval_splits"] == ["test", "hard"]
    assert doc["metrics"]["hard"]["num_trials"]["value"] == 2
    assert (result_file.parent / "hard_scores.txt").is_file()
