"""A run killed with SIGKILL in the middle of a model rule resumes to the same tables as a clean run
(issue 15): outputs are atomic, the workflow profile reruns incomplete jobs, the cache holds only
whole entries."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TARGET = "results/eval/baseline/accuracy.parquet"  # gathered from the model's own table
pytestmark = pytest.mark.slow


def _cmd(workdir: Path) -> list[str]:
    # the target before --configfile, which takes several values
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2",
            TARGET, "--configfile", str(REPO / "config/smoke.yaml")]


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            "HF_HUB_OFFLINE": "1"}


def test_a_run_killed_during_a_model_rule_resumes_to_the_clean_tables(tmp_path):
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    done = subprocess.run(_cmd(clean), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    proc = subprocess.Popen(_cmd(killed), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    cache = killed / "results/cache/completions"
    deadline = time.time() + 600
    # kill once the model rule has answered its first batch (the cache's first entry), mid-rule
    while time.time() < deadline and proc.poll() is None and not (cache.is_dir() and any(cache.rglob("*.json"))):
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    assert proc.poll() is None or proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    proc.wait(timeout=60)
    assert not (killed / TARGET).exists()  # nothing half-written in place
    # a kill leaves Snakemake's lock behind: unlock, as Snakemake asks, then run again
    unlock = subprocess.run([*_cmd(killed), "--unlock"], cwd=REPO, env=_env(), capture_output=True, text=True,
                            timeout=300, check=False)
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    again = subprocess.run(_cmd(killed), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    for name in (TARGET, "results/models/random-llama/eval/baseline/scored.parquet", "results/eval/items.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(killed / name), pd.read_parquet(clean / name))
