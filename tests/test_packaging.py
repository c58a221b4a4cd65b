"""The built wheel carries tasks/ as nestbench.tasks, configs/ and the shipped weights."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_contents_and_import(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=600,
    )
    wheel = next(tmp_path.glob("nestbench-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for path in (
        "nestbench/tasks/sv/task.py",
        "nestbench/configs/run.yaml",
        "nestbench/configs/tasks/sv.yaml",
        "nestbench/configs/tasks/diar.yaml",
        "nestbench/tasks/diar/task.py",
        "nestbench/configs/pretrain/embedded.yaml",
        "nestbench/configs/sweeps/embedded.yaml",
        "nestbench/weights/nest_embedded.nemo",
    ):
        assert path in names, path
    assert not any(n.startswith(("tasks/", "configs/")) for n in names)  # no top-level modules
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = (
        "import nestbench, nestbench.tasks.sv as sv; from nestbench.config import "
        f"resolve_run_config; assert sv.__file__.startswith({str(site)!r}); "
        "print(resolve_run_config('sv').encoder.spec)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "nest-embedded"
