"""Readers of saved arrays name the file when it is truncated or malformed (issue 15, defect 5, the
artefact half): a killed or corrupted activation or direction file gives a one-line error, no traceback."""

from __future__ import annotations

import numpy as np
import pytest

from tomlab import io
from tomlab.cli.main import main
from tomlab.steering.directions import load_direction_sets


def _truncate(path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_a_truncated_npy_is_named(tmp_path):
    path = tmp_path / "acts.npy"
    io.write_npy(path, np.zeros((50, 2, 4, 8), dtype=np.float32))
    assert io.read_npy(path).shape == (50, 2, 4, 8)
    _truncate(path)
    with pytest.raises(ValueError, match="acts.npy: not a readable .npy"):
        io.read_npy(path)
    (tmp_path / "junk.npy").write_bytes(b"\x00" * 10)
    with pytest.raises(ValueError, match="junk.npy"):
        io.read_npy(tmp_path / "junk.npy")


def test_a_truncated_direction_archive_is_named(tmp_path):
    path = tmp_path / "dirs.npz"
    np.savez(path, **{"theta/+tpfo": np.ones((2, 3, 4)), "heads/+tpfo": np.array([[0, 1], [1, 2]])})
    assert set(load_direction_sets(path)) == {"+tpfo"}
    _truncate(path, 0.6)
    with pytest.raises(ValueError, match="dirs.npz: not a readable .npz"):
        load_direction_sets(path)


def test_the_command_line_reports_the_file_not_a_traceback(tmp_path, capsys):
    acts = tmp_path / "acts.npy"
    io.write_npy(acts, np.zeros((8, 2, 2, 4), dtype=np.float32))
    _truncate(acts, 0.7)
    import pandas as pd

    pd.DataFrame({"sample_id": range(8), "story_id": [i // 4 for i in range(8)], "protagonist": [1, 0] * 4}).to_parquet(
        tmp_path / "samples.parquet")
    pd.DataFrame({"sample_id": range(8), "is_val": [False] * 4 + [True] * 4}).to_parquet(tmp_path / "split.parquet")
    code = main(["decodability", "--activations", str(acts), "--samples", str(tmp_path / "samples.parquet"),
                 "--split", str(tmp_path / "split.parquet"), "--out", str(tmp_path / "out.parquet")])
    err = capsys.readouterr().err
    assert code == 1 and "acts.npy: not a readable .npy" in err and "Traceback" not in err
    assert not (tmp_path / "out.parquet").exists()


def test_a_truncated_parquet_is_named_by_the_command_line(tmp_path, capsys):
    import pandas as pd

    samples = tmp_path / "samples.parquet"
    io.write_parquet(samples, pd.DataFrame({"sample_id": range(8), "protagonist": [1, 0] * 4}))
    _truncate(samples, 0.5)
    with pytest.raises(ValueError, match="samples.parquet: not a readable parquet table"):
        io.read_parquet(samples)
    code = main(["split", "--samples", str(samples), "--out", str(tmp_path / "split.parquet")])
    err = capsys.readouterr().err
    assert code == 1 and "samples.parquet: not a readable parquet table" in err and "Traceback" not in err
