"""Issue 15's smaller defects, each pinned: NUL bytes and duplicated stories in the raw file, the line
of a bad UTF-8 byte, an evaluation split with no stories, a misspelt config key, a cache entry nested
too deep to read, and result files that ignore the umask."""

from __future__ import annotations

import csv
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from tomlab import io
from tomlab.backends.lm import CachedLM, GenerationConfig, ScriptedLM
from tomlab.bigtom.evaluation import build_items
from tomlab.bigtom.raw import BigToMFormatError, read_raw
from tomlab.bigtom.stories import generate_stories
from tomlab.schema import check_keys, unknown_keys

REPO = Path(__file__).resolve().parents[1]


def _write_rows(path: Path, rows: list[list[str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter=";").writerows(rows)


def _rows(n: int = 3) -> list[list[str]]:
    from tomlab.bigtom.raw import RAW_FIELDS

    frame = generate_stories(n, 0)
    return [[str(r[f]) for f in RAW_FIELDS] for r in frame.to_dict("records")]


def test_a_nul_byte_is_refused_on_its_line(tmp_path):
    rows = _rows()
    rows[1][3] = rows[1][3][:5] + "\x00" + rows[1][3][5:]
    _write_rows(tmp_path / "raw.csv", rows)
    with pytest.raises(BigToMFormatError, match=r"line 2: fields contain a NUL byte: action_aware"):
        read_raw(tmp_path / "raw.csv")


def test_duplicated_stories_are_read_with_a_warning_naming_their_lines(tmp_path):
    rows = _rows()
    _write_rows(tmp_path / "raw.csv", [rows[0], rows[1], rows[0], rows[2]])
    with pytest.warns(UserWarning, match="line 3 repeats the story of line 1"):
        assert len(read_raw(tmp_path / "raw.csv")) == 4


def test_a_bad_utf8_byte_is_reported_on_its_own_line(tmp_path):
    rows = _rows(40)
    _write_rows(tmp_path / "raw.csv", rows)
    lines = (tmp_path / "raw.csv").read_bytes().split(b"\n")
    lines[30] = lines[30].replace(b" ", b" \xff", 1)  # far past the decoder's first chunk
    (tmp_path / "raw.csv").write_bytes(b"\n".join(lines))
    with pytest.raises(BigToMFormatError) as err:
        read_raw(tmp_path / "raw.csv")
    assert err.value.line == 31 and "UTF-8" in err.value.problem


def test_an_evaluation_split_without_stories_is_refused(generated_conditions):
    with pytest.raises(ValueError, match="no evaluation stories"):
        build_items(generated_conditions(4, 0), eval_fraction=0.1)  # int(4 * 0.1) = 0
    assert len(build_items(generated_conditions(4, 0), eval_fraction=0.5)) > 0


def test_misspelt_config_keys_are_named_with_the_nearest_valid_ones():
    assert unknown_keys({"model": {"name": "x"}, "stories": {"source": "generated"}}) == []
    found = unknown_keys({"stres": {}, "model": {"nmae": "x"}})
    assert found == ["stres (did you mean stress or stories?)", "model.nmae (did you mean name?)"]
    with pytest.raises(ValueError, match="unknown config keys: stres"):
        check_keys({"stres": {}, "model": {"nmae": "x"}})


def test_a_cache_entry_nested_too_deep_is_a_miss(tmp_path):
    cached = CachedLM(ScriptedLM(lambda t: "fresh", model_id="m"), tmp_path)
    cfg = GenerationConfig()
    path = cached.path_for(cached.key("a", cfg))
    path.parent.mkdir(parents=True)
    path.write_text("[" * 200_000 + "]" * 200_000)
    out = cached.generate(["a"], cfg)[0]
    assert not out.cached and out.text == "fresh"


def test_results_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        io._umask.cache_clear()
        io.write_parquet(tmp_path / "t.parquet", pd.DataFrame({"a": [1]}))
        io.write_json(tmp_path / "t.json", {"a": 1})
        with io.atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("x")
        assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "t.json").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    finally:
        os.umask(old)
        io._umask.cache_clear()
