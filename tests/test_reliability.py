"""Issue 15's smaller defects, each pinned: NUL bytes and duplicated stories in the raw file, the line
of a bad UTF-8 byte, an evaluation split with no stories, a misspelt config key, a cache entry nested
too deep to read, and result files that ignore the umask; and issue 26's cache entry that is a FIFO, a
directory or a symlink rather than a regular file."""

from __future__ import annotations

import csv
import os
import stat
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tomlab import io
from tomlab.backends.lm import CachedLM, Completion, GenerationConfig, ScriptedLM
from tomlab.bigtom.evaluation import build_items
from tomlab.bigtom.raw import BigToMFormatError, read_raw
from tomlab.bigtom.stories import generate_stories
from tomlab.schema import (
    MAX_YAML_VALUES,
    YAMLTooLarge,
    check_config_size,
    check_integers,
    check_keys,
    check_size,
    float_integers,
    safe_load,
    unknown_keys,
)

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


def _generate_within(cached: CachedLM, prompt: str, seconds: float = 10.0, fifo: Path | None = None) -> Completion:
    """``cached.generate([prompt])`` in a thread: a hang (a FIFO opened for reading) fails the test instead of
    stalling it (the FIFO is then opened for writing once, so the thread ends)."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_outcome(cached, prompt)), daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if fifo is not None:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail(f"reading the cache entry hung for {seconds:.0f} s")
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def _outcome(cached: CachedLM, prompt: str) -> Completion | BaseException:
    try:
        return cached.generate([prompt], GenerationConfig())[0]
    except Exception as err:  # handed to the test's thread
        return err


@pytest.mark.parametrize("kind", ["fifo", "directory", "symlink"])
def test_a_cache_entry_that_is_not_a_regular_file_is_a_miss(tmp_path, kind):
    cached = CachedLM(ScriptedLM(lambda t: "fresh", model_id="m"), tmp_path / "cache")
    path = cached.path_for(cached.key("a", GenerationConfig()))
    path.parent.mkdir(parents=True)
    outside = tmp_path / "outside.json"
    planted = CachedLM(ScriptedLM(lambda t: "planted", model_id="m"), tmp_path / "other")
    planted.generate(["a"], GenerationConfig())  # a valid-looking entry with the same key, outside the cache
    outside.write_bytes(planted.path_for(planted.key("a", GenerationConfig())).read_bytes())
    before = outside.read_bytes()
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path.symlink_to(outside)
    out = _generate_within(cached, "a", fifo=path if kind == "fifo" else None)
    assert not out.cached and out.text == "fresh"
    assert outside.read_bytes() == before  # nothing is written through a link
    if kind == "directory":
        assert path.is_dir()  # left alone: the answer is not stored
    else:
        assert stat.S_ISREG(path.lstat().st_mode)  # the link or FIFO is replaced by a fresh entry
        assert _generate_within(cached, "a").cached


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


# --- issue 26: a YAML alias bomb, and floats where the schema takes integers ------------------------


def _alias_bomb(levels: int = 9, width: int = 9) -> str:
    """A "billion laughs" config: a few hundred bytes, width**levels values once its aliases are expanded."""
    lines = ["model:", "  random_config:", "    l0: &l0 [" + ", ".join(["x"] * width) + "]"]
    lines += [f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


def _finishes(fn: Any, budget: float) -> tuple[bool, Any]:
    """Run ``fn`` in a daemon thread: (finished within ``budget`` seconds, what it returned or raised)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as err:  # noqa: BLE001 (handed back to the test)
            out.append(err)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(budget)
    return not worker.is_alive(), out[0] if out else None


def test_an_alias_bomb_is_refused_quickly_naming_the_key():
    import time

    text = _alias_bomb()
    assert len(text) < 600  # 9**9 (387 million) values once expanded
    start = time.perf_counter()
    check_size(list(range(MAX_YAML_VALUES - 10)), "small")  # a legitimate document just under the bound
    small = time.perf_counter() - start
    finished, result = _finishes(lambda: safe_load(text, "bomb.yaml"), budget=50 * small)
    assert finished, "the bounded walk did not stop at the bound"
    assert isinstance(result, YAMLTooLarge) and isinstance(result, ValueError)
    message = str(result)
    assert message.startswith("bomb.yaml: more than 100000 values") and "model.random_config.l" in message
    assert len(message.splitlines()) == 1


def test_a_self_referencing_alias_is_refused():
    finished, result = _finishes(lambda: safe_load("a: &a [*a, *a]\n", "loop.yaml"), budget=60)
    assert finished and isinstance(result, YAMLTooLarge) and "at a[0][0]" in str(result)


def test_the_config_check_names_the_file_with_the_bomb(tmp_path):
    import yaml

    good, bomb = tmp_path / "good.yaml", tmp_path / "bomb.yaml"
    good.write_text("stories: {n: 8}\n")
    bomb.write_text(_alias_bomb())
    config = {**yaml.safe_load(good.read_text()), **yaml.safe_load(bomb.read_text())}
    finished, result = _finishes(lambda: check_config_size(config, [good, bomb]), budget=60)
    assert finished and isinstance(result, ValueError)
    assert str(result).startswith(f"config file {bomb}: more than") and "model.random_config" in str(result)
    check_config_size(yaml.safe_load((REPO / "config/paper.yaml").read_text()), [REPO / "config/paper.yaml"])


@pytest.mark.parametrize(("config", "key"), [
    ({"stories": {"n": 200.0}}, "stories.n: expected an integer, got 200.0"),
    ({"team": {"map": {"rooms": [0, 3.0]}}}, "team.map.rooms[1]: expected an integer, got 3.0"),
    ({"team": {"llm": {"batch_size": 8.0}}}, "team.llm.batch_size: expected an integer, got 8.0"),  # anyOf
    ({"evaluation": {"max_stories": 2.0}}, "evaluation.max_stories: expected an integer, got 2.0"),  # [integer, null]
    ({"models": {"a": {"name": "random:llama", "gpu": 1.0}}}, "models.a.gpu: expected an integer, got 1.0"),
    ({"team": {"model": {"name": "random:llama", "seed": 2.0}}}, "team.model.seed: expected an integer, got 2.0"),
])
def test_a_float_where_the_schema_takes_an_integer_is_refused(config, key):
    with pytest.raises(ValueError, match="expected an integer") as err:
        check_integers(config)
    assert key in str(err.value)


def test_floats_stay_where_the_schema_takes_numbers():
    ok = {"model": {"name": "x", "memory_share": 1.0, "gpu": 0}, "stories": {"n": 200},
          "team": {"llm": {"batch_size": "auto", "temperature": 1.0}}}
    assert float_integers(ok) == []
    check_integers(ok)


@pytest.mark.parametrize("target", ["folder", "file", "dangling"])
def test_an_output_folder_that_is_a_symlink_is_replaced_not_written_through(tmp_path, target):
    elsewhere = tmp_path / "elsewhere"
    if target == "folder":
        elsewhere.mkdir()
        (elsewhere / "keep.txt").write_text("keep")
    elif target == "file":
        elsewhere.write_text("keep")
    out = tmp_path / "out"
    out.symlink_to(elsewhere)
    with io.atomic_dir(out) as tmp:
        (tmp / "new.txt").write_text("new")
    assert not out.is_symlink() and (out / "new.txt").read_text() == "new"  # the link itself was replaced
    if target == "folder":
        assert (elsewhere / "keep.txt").read_text() == "keep" and not (elsewhere / "new.txt").exists()
    elif target == "file":
        assert elsewhere.read_text() == "keep"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []  # no temporary left

