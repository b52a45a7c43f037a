"""Tests for tomlab.data: strict BigToM parsing and the 25 condition files."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from tomlab.bigtom import conditions as data
from tomlab.bigtom.conditions import (
    CONDITION_NAMES,
    build_conditions,
    conditions_from_csv,
    read_condition,
    write_conditions,
)
from tomlab.bigtom.raw import (
    RAW_FIELDS,
    BigToMFormatError,
    read_raw,
    story_parts,
    write_raw,
)

REAL_CSV = Path(__file__).resolve().parents[2] / "shared/data/bigtom/bigtom.csv"
EDGE_CSV = Path(__file__).resolve().parent / "fixtures" / "bigtom_edge.csv"

needs_real = pytest.mark.skipif(
    not REAL_CSV.is_file(),
    reason=f"real BigToM file not available at {REAL_CSV} (shared data folder beside the checkout is absent)",
)


# ---------------------------------------------------------------------------------------------
# an independent statement of the condition rules, written from the specification


def _expected(fields: list[str], key: str) -> tuple[str, str, str, str]:
    """(story, question, correct, wrong) for one raw row and one condition key."""
    (story, aware_ev, not_aware_ev, act_aware, act_not_aware, belief_q, _desire_q, action_q,
     belief_a, _da, action_a, belief_n, _dn, action_n, random_ev, aware_rand, not_aware_rand) = fields[:17]
    p = story.split(".")
    if key == "1_percept_to_belief_true_belief":
        return p[0] + "." + p[1] + "." + p[2] + ".", belief_q, belief_a, belief_n
    init, rest = key.split("_", 1)
    if init == "0":
        trunk = p[0] + "." + p[1] + "." + p[2] + "." + p[4] + "."
        control = p[0] + "." + p[1] + "." + p[2] + ". " + random_ev
    else:
        trunk = p[0] + "." + p[1] + "." + p[2] + "." + p[3] + "." + p[4] + "."
        control = p[0] + "." + p[1] + "." + p[2] + "." + p[3] + ". " + random_ev
    variable, condition = re.fullmatch(r"(forward_belief|forward_action|backward_belief)_(\w+)", rest).groups()
    if variable == "forward_action":
        question, a, n = action_q, action_a, action_n
    else:
        question, a, n = belief_q, belief_a, belief_n
    if variable.startswith("forward"):
        endings = {
            "true_belief": (trunk + " " + aware_ev, a, n),
            "false_belief": (trunk + " " + not_aware_ev, n, a),
            "true_control": (control + " " + aware_rand, n, a),
            "false_control": (control + " " + not_aware_rand, n, a),
        }
    else:
        endings = {
            "true_belief": (trunk + " " + act_aware, a, n),
            "false_belief": (trunk + " " + act_not_aware, n, a),
            "true_control": (control + " " + act_not_aware, n, a),
            "false_control": (control + " " + act_not_aware, n, a),
        }
    s, correct, wrong = endings[condition]
    return s, question, correct, wrong


def _csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [row for row in csv.reader(fh, delimiter=";") if row]


# ---------------------------------------------------------------------------------------------
# constants


def test_names_and_keys() -> None:
    assert len(RAW_FIELDS) == 17 and len(set(RAW_FIELDS)) == 17
    assert RAW_FIELDS[0] == "story" and RAW_FIELDS[-1] == "not_aware_of_random_event"
    assert len(CONDITION_NAMES) == 25 and len(set(CONDITION_NAMES)) == 25
    expected = {
        f"{i}_{v}_{c}"
        for i in (0, 1)
        for v in ("forward_belief", "forward_action", "backward_belief")
        for c in ("true_belief", "false_belief", "true_control", "false_control")
    } | {"1_percept_to_belief_true_belief"}
    assert set(CONDITION_NAMES) == expected


def test_story_parts() -> None:
    story = "A b. C d. E f. G h. I j."
    parts = story_parts(story)
    assert parts == ["A b", " C d", " E f", " G h", " I j"]
    assert "".join(p + "." for p in parts) == story
    for bad in ("A. B. C. D.", "A. B. C. D. E. F.", "A. B. C. D. E", "A. B. C. D. E. F", "A. B.. D. E.", ""):
        with pytest.raises(ValueError):
            story_parts(bad)


# ---------------------------------------------------------------------------------------------
# the real BigToM file


@needs_real
def test_real_file_parses() -> None:
    raw = read_raw(REAL_CSV)
    direct = _csv_rows(REAL_CSV)
    assert len(raw) == len(direct) == 200
    assert list(raw.columns) == [*RAW_FIELDS, "story_id"]
    assert raw["story_id"].tolist() == list(range(200))
    for i in (0, 1, 117, 199):
        assert raw.loc[i, list(RAW_FIELDS)].tolist() == direct[i][:17]


@needs_real
def test_real_file_conditions_follow_the_rules() -> None:
    raw = read_raw(REAL_CSV)
    direct = _csv_rows(REAL_CSV)
    conds = build_conditions(raw)
    assert list(conds) == list(CONDITION_NAMES)
    for key, frame in conds.items():
        assert len(frame) == 200, key
        assert frame["story_id"].tolist() == list(range(200)), key
        for i in (0, 1, 63, 199):
            got = tuple(frame.loc[i, ["story", "question", "correct", "wrong"]])
            assert got == _expected(direct[i], key), (key, i)
    # the worked example from the specification, spelled out
    row = direct[0]
    p = row[0].split(".")
    fb = conds["0_forward_belief_false_belief"].iloc[0]
    assert fb["story"] == f"{p[0]}.{p[1]}.{p[2]}.{p[4]}. {row[2]}"
    assert fb["correct"] == row[11] and fb["wrong"] == row[8]
    # true and false belief differ, and the control stories contain the random event, not the causal event
    tc = conds["1_forward_belief_true_control"].iloc[0]
    assert row[14] in tc["story"] and p[4].strip() not in tc["story"]


@needs_real
def test_real_file_written_conditions(tmp_path: Path) -> None:
    out = tmp_path / "conditions"
    paths = conditions_from_csv(REAL_CSV, out)
    assert paths == [out / key / "stories.csv" for key in CONDITION_NAMES]
    assert sorted(p.name for p in out.iterdir()) == sorted(CONDITION_NAMES)
    direct = _csv_rows(REAL_CSV)
    for key, path in zip(CONDITION_NAMES, paths):
        blob = path.read_bytes()
        lines = blob.split(b"\r\n")
        assert lines[-1] == b"", "file must end with CRLF"
        assert len(lines) - 1 == 200, "one CRLF-terminated line per story (no header, no extra lines)"
        assert b"\n" not in blob.replace(b"\r\n", b""), "only CRLF line ends"
        rows = _csv_rows(path)
        assert all(len(r) == 4 for r in rows)
        assert tuple(rows[0]) == _expected(direct[0], key), "first line is story 0, not a header"
        back = read_condition(path)
        assert list(back.columns) == ["story", "question", "correct", "wrong"]
        assert [tuple(r) for r in back.itertuples(index=False)] == [_expected(d, key) for d in direct]


# ---------------------------------------------------------------------------------------------
# the edge-case fixture


def test_edge_fixture_parses_and_builds(tmp_path: Path) -> None:
    raw = read_raw(EDGE_CSV)
    assert len(raw) == 3
    assert raw["story_id"].tolist() == [0, 1, 2]
    assert '"Sunday" market, near' in raw.loc[0, "story"]
    assert raw.loc[0, "story"].startswith("Siobhan O'Neill")
    assert raw.loc[0, "random_event"] == "A dog barks; a child laughs at it."
    assert raw.loc[0, "not_aware_of_random_event"] == 'Siobhan does not hear the dog, the "noisy" one.'
    assert raw.loc[1, "story"].startswith("D'Arcy")  # the 17-field row
    direct = _csv_rows(EDGE_CSV)
    conds = build_conditions(raw)
    for key in CONDITION_NAMES:
        assert [tuple(r) for r in conds[key][["story", "question", "correct", "wrong"]].itertuples(index=False)] == [
            _expected(d, key) for d in direct
        ]
    paths = write_conditions(raw, tmp_path / "out")
    for key, path in zip(CONDITION_NAMES, paths):
        back = read_condition(path)
        pd.testing.assert_frame_equal(back, conds[key][["story", "question", "correct", "wrong"]].astype(object))


def test_write_raw_round_trip(tmp_path: Path) -> None:
    raw = read_raw(EDGE_CSV)
    target = tmp_path / "nested" / "copy.csv"
    write_raw(raw, target)
    blob = target.read_bytes()
    assert blob.endswith(b";generated;0\r\n")
    assert len(_csv_rows(target)[1]) == 19  # the 17-field row now carries bookkeeping
    again = read_raw(target)
    pd.testing.assert_frame_equal(again, raw)
    assert [p.name for p in target.parent.iterdir()] == ["copy.csv"]  # no temporary left behind


def test_write_raw_rejects_bad_rows(tmp_path: Path) -> None:
    raw = read_raw(EDGE_CSV)
    bad = raw.copy()
    bad.loc[1, "story"] = "Only. Four. Sentences. Here."
    target = tmp_path / "bad.csv"
    with pytest.raises(ValueError, match="row 1"):
        write_raw(bad, target)
    assert not target.exists()
    with pytest.raises(ValueError, match="missing columns"):
        write_raw(raw.drop(columns=["random_event"]), target)


# ---------------------------------------------------------------------------------------------
# malformed input


def _edge_lines() -> list[str]:
    text = EDGE_CSV.read_bytes().decode("utf-8")
    return [line for line in text.split("\r\n") if line]


def _good_story_row(story: str) -> str:
    """The fixture's 19-field row 3 with its story replaced."""
    fields = next(csv.reader([_edge_lines()[2]], delimiter=";"))
    fields[0] = story
    return ";".join(fields)


MALFORMED = {
    "18 fields": lambda: _edge_lines()[2].rsplit(";", 1)[0],  # bookkeeping field dropped
    "4 sentences": lambda: _good_story_row("One a. Two b. Three c. Four d."),
    "6 sentences": lambda: _good_story_row("One a. Two b. Three c. Four d. Five e. Six f."),
    "text after last period": lambda: _good_story_row("One a. Two b. Three c. Four d. Five e. Six f"),
    "empty sentence": lambda: _good_story_row("One a. Two b.. Four d. Five e."),
    "empty story": lambda: _good_story_row(""),
    "20 fields": lambda: _edge_lines()[2] + ";more",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_row_is_reported_with_file_and_line(tmp_path: Path, kind: str) -> None:
    lines = _edge_lines()
    bad_line = MALFORMED[kind]()
    path = tmp_path / f"broken_{kind.replace(' ', '_')}.csv"
    path.write_bytes(("\r\n".join([lines[0], lines[1], bad_line, lines[2]]) + "\r\n").encode("utf-8"))
    with pytest.raises(BigToMFormatError) as err:
        read_raw(path)
    assert err.value.line == 3
    assert path.name in str(err.value)
    assert re.search(r"\bline 3\b", str(err.value))
    assert isinstance(err.value, ValueError)
    out = tmp_path / "out"
    with pytest.raises(BigToMFormatError):
        conditions_from_csv(path, out)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name], "nothing else written"


def test_empty_required_field(tmp_path: Path) -> None:
    fields = next(csv.reader([_edge_lines()[2]], delimiter=";"))
    fields[RAW_FIELDS.index("belief_answer_aware")] = "  "
    path = tmp_path / "empty_field.csv"
    path.write_text(_edge_lines()[0] + "\r\n" + ";".join(fields) + "\r\n", encoding="utf-8", newline="")
    with pytest.raises(BigToMFormatError, match="belief_answer_aware") as err:
        read_raw(path)
    assert err.value.line == 2


def test_blank_line_in_the_middle(tmp_path: Path) -> None:
    lines = _edge_lines()
    path = tmp_path / "gap.csv"
    path.write_text("\r\n".join([lines[0], lines[1], "", "", lines[2]]) + "\r\n", encoding="utf-8", newline="")
    with pytest.raises(BigToMFormatError, match="blank line") as err:
        read_raw(path)
    assert err.value.line == 3


def test_line_numbers_count_physical_lines(tmp_path: Path) -> None:
    """A quoted field spanning two lines shifts the reported line of a later bad row."""
    fields = next(csv.reader([_edge_lines()[2]], delimiter=";"))
    fields[RAW_FIELDS.index("desire_question")] = "Does Kemal want to\r\ndeliver the parcel?"
    buf = tmp_path / "multi.csv"
    with open(buf, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=";")
        w.writerow(fields)  # lines 1-2
        fh.write(_edge_lines()[1] + "\r\n")  # line 3
        fh.write("too;few;fields\r\n")  # line 4
    with pytest.raises(BigToMFormatError) as err:
        read_raw(buf)
    assert err.value.line == 4


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("\r\n\r\n", encoding="utf-8", newline="")
    with pytest.raises(BigToMFormatError, match="no stories"):
        read_raw(path)


def test_read_condition_rejects_wrong_field_count(tmp_path: Path) -> None:
    path = tmp_path / "stories.csv"
    path.write_text("a;b;c;d\r\ne;f;g\r\n", encoding="utf-8", newline="")
    with pytest.raises(BigToMFormatError) as err:
        read_condition(path)
    assert err.value.line == 2


# ---------------------------------------------------------------------------------------------
# atomic output


def test_existing_output_is_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "0_forward_belief_true_belief").mkdir(parents=True)
    (out / "0_forward_belief_true_belief" / "stories.csv").write_text("stale;row;x;y\r\n")
    (out / "leftover.txt").write_text("from an older run")
    paths = conditions_from_csv(EDGE_CSV, out)
    assert sorted(p.name for p in out.iterdir()) == sorted(CONDITION_NAMES)
    assert len(read_condition(paths[0])) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no temporary directory left beside out"


def test_failed_parse_leaves_existing_output_untouched(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "marker.txt").write_text("keep me")
    bad = tmp_path / "bad.csv"
    bad.write_text(_edge_lines()[0] + "\r\nnot;a;story\r\n", encoding="utf-8", newline="")
    with pytest.raises(BigToMFormatError):
        conditions_from_csv(bad, out)
    assert [p.name for p in out.iterdir()] == ["marker.txt"]


@pytest.mark.parametrize("existing", [False, True])
def test_failure_while_writing_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool) -> None:
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "marker.txt").write_text("keep me")
    real_writer = data._write_condition_file
    calls = {"n": 0}

    def flaky(path: Path, frame: pd.DataFrame) -> None:
        calls["n"] += 1
        if calls["n"] == 10:
            raise OSError("disk full (simulated)")
        real_writer(path, frame)

    monkeypatch.setattr(data, "_write_condition_file", flaky)
    with pytest.raises(OSError, match="simulated"):
        conditions_from_csv(EDGE_CSV, out)
    assert calls["n"] == 10
    if existing:
        assert [p.name for p in out.iterdir()] == ["marker.txt"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    else:
        assert not out.exists()
        assert list(tmp_path.iterdir()) == []
