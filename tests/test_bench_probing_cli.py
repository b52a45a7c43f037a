"""The probing benchmark's command line writes the joint-probe cap measurement beside the timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tomlab.cli.main import main
from tomlab.probing.bench import synthetic_activations


def test_cli_bench_probing_writes_joint_cap_fields(tmp_path: Path) -> None:
    acts, meta = synthetic_activations(n_stories=20, n_layers=2, n_heads=2, dim=4, seed=3)
    np.save(tmp_path / "acts.npy", acts)
    meta.to_parquet(tmp_path / "samples.parquet")
    split = tmp_path / "split.parquet"
    assert main(["split", "--samples", str(tmp_path / "samples.parquet"), "--mode", "by_sample",
                 "--out", str(split)]) == 0
    out = tmp_path / "bench" / "probing.json"
    assert main(["bench", "probing", "--activations", str(tmp_path / "acts.npy"),
                 "--samples", str(tmp_path / "samples.parquet"), "--split", str(split),
                 "--sklearn-max-iter", "500", "--top-k", "3", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["joint_capped_max_iter"] == 100 and result["joint_top_k"] == 3  # the schema's cap
    assert 0 <= result["joint_top_k_overlap"] <= 3
    assert -1 <= result["joint_tpfo_cosine_min"] <= result["joint_tpfo_cosine_mean"] <= 1
    assert result["n_probes"] == 4 and result["n_val"] == 16
