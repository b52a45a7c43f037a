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


# --- bad input is named (issue 26, item 4): wrong columns, out-of-range counts, JSON of the wrong shape ---------
def _tables(tmp_path):
    """Parquet files with the wrong columns, one per kind of table a command reads."""
    import pandas as pd

    wrong = tmp_path / "wrong.parquet"
    io.write_parquet(wrong, pd.DataFrame({"x": [1, 2], "y": ["a", "b"]}))
    samples = tmp_path / "samples.parquet"
    io.write_parquet(samples, pd.DataFrame({"sample_id": range(4), "story_id": [0, 0, 1, 1], "prompt": ["p"] * 4,
                                            "oracle": [0, 1] * 2, "protagonist": [1, 0] * 2, "joint": [1, 2] * 2}))
    return wrong, samples


def _outs(tmp_path, *flags):
    return [part for flag in flags for part in (flag, str(tmp_path / f"out{flag.replace('-', '_')}"))]


BAD_INPUT = {
    "split: samples without sample_id": (
        lambda t, w, s: ["split", "--samples", str(w), "--out", str(t / "o.parquet")],
        ["--samples", "wrong.parquet", "'sample_id'", "'story_id'"]),
    "lexical: a split without is_val": (
        lambda t, w, s: ["lexical", "--samples", str(s), "--split", str(w), "--out", str(t / "o.parquet")],
        ["--split", "wrong.parquet", "'sample_id'", "'is_val'"]),
    "debate-run: items without a question": (
        lambda t, w, s: ["debate-run", "--task", "arithmetic", "--tasks", str(w), "--method", "cot",
                         "--models-json", '{"default": {"name": "random:llama"}}',
                         *_outs(t, "--out", "--out-turns", "--out-judge", "--transcripts")],
        ["--tasks", "wrong.parquet", "'id'", "'question'"]),
    "debate-tables: answers of the wrong table": (
        lambda t, w, s: ["debate-tables", "--task", "arithmetic", "--tasks", str(t / "items.parquet"),
                         "--answers", str(w), "--turns", str(w), "--models-json", '{"default": "m"}',
                         *_outs(t, "--out-scored", "--out-accuracy", "--out-disagreement", "--out-judge")],
        ["--answers", "wrong.parquet", "'question_id'"]),
    "debate-run: --models-json a list": (
        lambda t, w, s: ["debate-run", "--task", "arithmetic", "--tasks", str(t / "items.parquet"), "--method", "cot",
                         "--models-json", "[1]", *_outs(t, "--out", "--out-turns", "--out-judge", "--transcripts")],
        ["--models-json", "expected a JSON object"]),
    "debate-run: items with a repeated id": (
        lambda t, w, s: ["debate-run", "--task", "arithmetic", "--tasks", str(t / "twice.parquet"), "--method", "cot",
                         "--models-json", '{"default": "m"}',
                         *_outs(t, "--out", "--out-turns", "--out-judge", "--transcripts")],
        ["--tasks", "twice.parquet", "duplicate id(s)", "(row 1, row 2)"]),
    "plot-debate: accuracy of the wrong table": (
        lambda t, w, s: ["plot-debate", "--accuracy", str(w), "--disagreement", str(w),
                         *_outs(t, "--out-accuracy", "--out-disagreement")],
        ["--accuracy", "wrong.parquet", "'method'", "'accuracy'"]),
    "team-tables: episodes of the wrong table": (
        lambda t, w, s: ["team-tables", "--episodes", str(w), "--tom", str(w),
                         *_outs(t, "--out-episodes", "--out-summary", "--out-tom")],
        ["--episodes", "wrong.parquet", "'agent_type'", "'score'"]),
    "steering-tables: steered runs of the wrong table": (
        lambda t, w, s: ["steering-tables", "--baseline", str(w), "--steered", str(w), "--out", str(t / "o.parquet")],
        ["--baseline", "wrong.parquet", "'item_id'"]),
    "stress-verdicts: decodability of the wrong table": (
        lambda t, w, s: ["stress-verdicts", "--decodability", str(w), "--out", str(t / "o.parquet")],
        ["--decodability", "wrong.parquet", "'condition'"]),
    "team-play --seeds 0": (
        lambda t, w, s: ["team-play", "--agent-type", "random", "--seeds", "0",
                         *_outs(t, "--out-episodes", "--out-tom", "--transcripts")],
        ["--seeds", "from 1 to 10000", "got 0"]),
    "team-play --seeds -3": (
        lambda t, w, s: ["team-play", "--agent-type", "random", "--seeds", "-3",
                         *_outs(t, "--out-episodes", "--out-tom", "--transcripts")],
        ["--seeds", "got -3"]),
    "team-play --seeds 1000000000": (
        lambda t, w, s: ["team-play", "--agent-type", "random", "--seeds", "1000000000",
                         *_outs(t, "--out-episodes", "--out-tom", "--transcripts")],
        ["--seeds", "got 1000000000"]),
    "team-play --team-json a list": (
        lambda t, w, s: ["team-play", "--agent-type", "random", "--seeds", "1", "--team-json", "[1]",
                         *_outs(t, "--out-episodes", "--out-tom", "--transcripts")],
        ["--team-json", "expected a JSON object"]),
    "team-play --team-json with a map of the wrong type": (
        lambda t, w, s: ["team-play", "--agent-type", "random", "--seeds", "1", "--team-json", '{"map": 1}',
                         *_outs(t, "--out-episodes", "--out-tom", "--transcripts")],
        ["--team-json"]),
    "team-play --team-json not JSON": (
        lambda t, w, s: ["team-play", "--agent-type", "random", "--seeds", "1", "--team-json", "{map",
                         *_outs(t, "--out-episodes", "--out-tom", "--transcripts")],
        ["--team-json", "not valid JSON"]),
    "debate-tasks --n 0": (
        lambda t, w, s: ["debate-tasks", "--task", "arithmetic", "--n", "0", "--out", str(t / "o.parquet")],
        ["--n", "got 0"]),
    "split --val-fraction 1.5": (
        lambda t, w, s: ["split", "--samples", str(s), "--val-fraction", "1.5", "--out", str(t / "o.parquet")],
        ["--val-fraction", "between 0 and 1"]),
    "team-tables --n-boot 0": (
        lambda t, w, s: ["team-tables", "--episodes", str(w), "--tom", str(w), "--n-boot", "0",
                         *_outs(t, "--out-episodes", "--out-summary", "--out-tom")],
        ["--n-boot", "got 0"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_named_without_a_traceback(tmp_path, capsys, case):
    """Every command checks the columns of the tables it reads and the range of its numeric and JSON flags:
    it exits non-zero with one line naming the flag, the file and the column, and raises nothing."""
    from tomlab.debate.tasks import generate_arithmetic

    wrong, samples = _tables(tmp_path)
    items = generate_arithmetic(2, seed=0)
    io.write_parquet(tmp_path / "items.parquet", items)
    io.write_parquet(tmp_path / "twice.parquet", items.assign(id="same"))
    argv, expected = BAD_INPUT[case]
    try:
        code = main(argv(tmp_path, wrong, samples))
    except SystemExit as exc:  # argparse refuses a flag: exit status 2, its message on stderr
        code = exc.code
    err = capsys.readouterr().err
    assert code not in (0, None), err
    assert all(part in err for part in expected), err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and "error:" in lines[-1] and sum("error:" in line for line in lines) == 1, err


def test_bad_input_leaves_no_traceback_on_the_real_command_line(tmp_path):
    import os
    import subprocess
    import sys

    wrong, _ = _tables(tmp_path)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    runs = [[sys.executable, "-m", "tomlab", "split", "--samples", str(wrong), "--out", str(tmp_path / "o.parquet")],
            [sys.executable, "-m", "tomlab", "team-play", "--agent-type", "random", "--seeds", "-3",
             *_outs(tmp_path, "--out-episodes", "--out-tom", "--transcripts")]]
    for argv in runs:
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
        assert ("'sample_id'" in done.stderr) or ("--seeds" in done.stderr), done.stderr


def test_a_table_read_for_its_columns_names_the_file_the_flag_and_the_columns(tmp_path):
    import pandas as pd

    path = tmp_path / "t.parquet"
    io.write_parquet(path, pd.DataFrame({"a": [1], "b": [2]}))
    assert list(io.read_table(path, ("a",)).columns) == ["a", "b"]
    with pytest.raises(ValueError, match=r"^--heads x=\S*t\.parquet: missing column\(s\) 'layer', 'head' \(it has: a, b\)$"):
        io.read_table(path, ("a", "layer", "head"), flag="--heads x=")
    with pytest.raises(ValueError, match=r"^--samples \S*t\.parquet: missing column\(s\) 'c'"):
        io.read_table(path, ("c",), flag="--samples")


def test_the_columns_the_commands_require_are_the_ones_their_producers_write():
    """The contracts are subsets of what the producing commands write, so no valid table is refused."""
    from tomlab.bigtom.evaluation import ITEM_COLUMNS
    from tomlab.cli import common, debate, stress
    from tomlab.debate.run import TURN_COLUMNS
    from tomlab.stress.minds_probes import MINDS_COLUMNS, MINDS_STAT_COLUMNS
    from tomlab.stress.transfer import CORRECT_COLUMNS, STAT_COLUMNS

    assert set(common.ITEM_COLUMNS) <= set(ITEM_COLUMNS)
    assert set(debate.TURN_COLUMNS) <= set(TURN_COLUMNS)
    assert set(stress.TRANSFER_COLUMNS) <= {*CORRECT_COLUMNS, "n_classes"}
    assert set(stress.TRANSFER_STAT_COLUMNS) <= set(STAT_COLUMNS)
    assert set(stress.MINDS_COLUMNS) <= set(MINDS_COLUMNS) and set(stress.MINDS_STAT_COLUMNS) <= set(MINDS_STAT_COLUMNS)
