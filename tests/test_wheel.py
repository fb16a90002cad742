"""The wheel carries the shipped models and the sample: installed outside the source tree, `mrimpute demo` runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_installed_wheel_runs_the_demo_from_another_folder(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path / "dist"), str(PROJECT)], check=True, cwd=tmp_path)
    wheel = next((tmp_path / "dist").glob("mrimpute-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"mrimpute/models/default.pt", "mrimpute/models/lesion.pt", "mrimpute/sample/ms07/t1.nii.gz"} <= names
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, cwd=tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("MRIMPUTE_MODEL", None)
    where = subprocess.run([sys.executable, "-c", "import mrimpute; print(mrimpute.__file__)"], env=env, cwd=work,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))  # the installed copy, not the source tree
    done = subprocess.run([sys.executable, "-m", "mrimpute", "demo", "--out-dir", "out", "--threads", "1"], env=env,
                          cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    metrics = json.loads((work / "out" / "metrics.json").read_text())
    assert metrics["in_brain"]["ssim"] > 0.3
