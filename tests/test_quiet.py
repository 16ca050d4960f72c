"""The compiled path prints no "No CUDA runtime is found" line on a CPU machine."""

import os
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def test_a_compiled_run_prints_no_cuda_home_notice(tmp_path, data_dir):
    if torch.cuda.is_available():
        import pytest

        pytest.skip("the notice is only printed where there is no CUDA runtime")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run([sys.executable, "-m", "experiments.train", "--epochs", "1", "--set", "train_size=200",
                             "--engine", "compiled", "--out", str(tmp_path / "runs"), "--data-dir", str(Path(data_dir).resolve())],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "pass  1/1" in result.stdout
    assert "No CUDA runtime" not in result.stdout + result.stderr
