"""The debate paper's released outputs (tomlab.debate.released): system outputs scored against the items,
MAD's debate records imported, on invented records in the released format (the MAD files are GPL-3.0 and
never committed here)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tests.mad_fixture import ITEMS, write_records, write_released
from tomlab.debate.released import (
    ReleasedDataError,
    debate_moves,
    parse_literal_dict,
    read_mad_records,
    read_outputs,
    score_systems,
)

@pytest.fixture
def records(tmp_path):
    return write_records(tmp_path)


def test_import_reads_every_record_into_the_tables(records, tmp_path):
    t = read_mad_records(records)
    deb = t["debates"].set_index("id")
    assert list(deb.index) == [0, 1, 2, 10]  # numeric order, not 0, 1, 10, 2
    assert deb.loc[0, "ended_by"] == "judge" and deb.loc[0, "rounds"] == 3 and deb.loc[0, "supported_side"] == ""
    assert deb.loc[1, "ended_by"] == "moderator" and deb.loc[1, "supported_side"] == "negative"
    assert deb.loc[2, "rounds"] == 1 and deb.loc[2, "supported_side"] == "affirmative"
    assert json.loads(deb.loc[1, "decisions"])[1]["Supported Side"] == "Negative"
    assert list(t["items"]["reference"]) == list(ITEMS["reference"])
    problems = t["problems"]
    assert list(zip(problems["id"], problems["side"], problems["round"])) == [(10, "moderator", 1)]
    assert not (tmp_path / "PWNED").exists() and not list(records.parent.glob("PWNED"))
    turns = t["turns"]
    assert set(turns["side"]) == {"affirmative", "negative", "moderator", "judge"}
    aff0 = turns[(turns["id"] == 0) & (turns["side"] == "affirmative") & (turns["role"] == "assistant")]
    assert list(aff0["round"]) == [1, 2, 3, 4]
    judge = t["judge"].set_index("id")
    assert list(judge.index) == [0, 10] and judge.loc[0, "parsed"] and judge.loc[0, "translation"] == "He made a phone call."


def test_moves_count_debates_that_changed_the_sense(records):
    t = read_mad_records(records)
    moves = debate_moves(t["debates"], t["items"], n_boot=200).set_index("debates")
    every, moved = moves.loc["every debate"], moves.loc["translation moved"]
    assert every["n"] == 4 and moved["n"] == 3 and every["moved"] == pytest.approx(0.75)
    assert every["toward_correct"] == 2 and every["away_from_correct"] == 1
    assert every["contrastive_before"] == pytest.approx(0.5) and every["contrastive_after"] == pytest.approx(0.75)
    assert every["change_low"] <= every["change"] <= every["change_high"]


@pytest.mark.parametrize("content, problem", [
    ("{}", None),
    ("not json at all", "not a JSON record"),
    ('{"players": []}', "no 'players' object"),
    ('{"source": "s", "correct reference": "r", "incorrect reference": "w", "players": {"Judge": ["text"]}}',
     "players.Judge is not a list of messages"),
])
def test_malformed_records_name_the_file(tmp_path, content, problem):
    (tmp_path / "0.json").write_text(content)
    if problem is None:
        with pytest.raises(ReleasedDataError, match="0.json"):
            read_mad_records(tmp_path)
        return
    with pytest.raises(ReleasedDataError, match=f"0.json.*{problem}"):
        read_mad_records(tmp_path)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(ReleasedDataError, match="no debate records"):
        read_mad_records(tmp_path)


def test_literal_dicts_are_read_never_evaluated():
    assert parse_literal_dict("{'a': 'it\\'s', \"b\": [1, -2.5, True, None], 'c': {'d': ''},}") == \
        {"a": "it's", "b": [1, -2.5, True, None], "c": {"d": ""}}
    assert parse_literal_dict('{"Reason": "x\\ny", "n": 1e3}') == {"Reason": "x\ny", "n": 1000.0}
    # JSON's words and escapes too (a judge from another source answers in JSON)
    assert parse_literal_dict('{"a": null, "b": true, "c": "caf\\u00e9 \\/ \\x41"}') == {"a": None, "b": True, "c": "café / A"}
    for bad in ("__import__('os').system('x')", "{'a': open('f')}", "{'a': nullx}", "{'a': Truely}", "{'a': 1} {'b': 2}", "{'a': 'unterminated}",
                "['a']", "{'a' 1}", "{'a': 1", "", "{1: {2: }}", "{'a': (1, 2)}"):
        with pytest.raises(ValueError):
            parse_literal_dict(bad)
    big = "{'Reason': '" + "x" * 2_000_000 + "', 'Supported Side': 'Negative'}"
    start = time.perf_counter()
    assert parse_literal_dict(big)["Supported Side"] == "Negative"
    assert time.perf_counter() - start < 5  # linear, not quadratic, in the reply's length
    with pytest.raises(ValueError, match="nested deeper"):
        parse_literal_dict("{'a': " * 100_000 + "1" + "}" * 100_000)  # no RecursionError
    with pytest.raises(ValueError):
        parse_literal_dict("[" * 100_000)
    many = "{" + ", ".join(f"'k{i}': {i}" for i in range(50_000)) + "}"
    assert len(parse_literal_dict(many)) == 50_000


def test_outputs_must_align_with_the_items(tmp_path):
    good = tmp_path / "good"
    good.write_bytes("\ufeffa\r\nb\r\nc\r\nd\r\n".encode())  # a BOM and CRLF are fine
    assert read_outputs(good, 4) == ["a", "b", "c", "d"]
    cases = {"short": ("a\nb\nc\n", "3 lines for 4 items"), "long": ("a\nb\nc\nd\ne\n", "line 5 is one too many"),
             "hole": ("a\n\nc\nd\n", "line 2: empty line"), "blank": ("a\nb\n  \t\nd", "line 3: empty line"),
             "trailing": ("a\nb\nc\nd\n\n", "line 5: empty line")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(ReleasedDataError, match=f"{name}.*{message}"):
            read_outputs(tmp_path / name, 4)
    (tmp_path / "latin").write_bytes(b"caf\xe9\nb\nc\nd\n")
    with pytest.raises(ReleasedDataError, match="latin: not UTF-8"):
        read_outputs(tmp_path / "latin", 4)


def test_scores_and_the_paired_difference():
    right, wrong = list(ITEMS["reference"]), list(ITEMS["wrong_reference"])
    mixed = [right[0], wrong[1], right[2], wrong[3]]
    table = score_systems(ITEMS, {"oracle": right, "decoy": wrong, "mixed": mixed}, baseline="decoy",
                          n_boot=500).set_index("system")
    assert table.loc["oracle", "bleu"] == pytest.approx(100.0) and table.loc["oracle", "contrastive"] == 1.0
    assert table.loc["decoy", "contrastive"] == 0.0 and table.loc["decoy", "diff"] == 0.0
    assert table.loc["mixed", "contrastive"] == 0.5 and table.loc["mixed", "diff"] == 0.5
    assert table.loc["mixed", "diff_low"] <= 0.5 <= table.loc["mixed", "diff_high"]
    assert table.loc["oracle", "diff_low"] == table.loc["oracle", "diff_high"] == 1.0  # every sentence gained
    assert list(table.columns[:6]) == ["n", "bleu", "chrf", "contrastive", "contrastive_low", "contrastive_high"]
    with pytest.raises(ValueError, match="'gpt9' is not one of the systems"):
        score_systems(ITEMS, {"oracle": right}, baseline="gpt9")
    assert "diff" not in score_systems(ITEMS, {"oracle": right}, n_boot=50).columns
    assert table["comet"].isna().all()  # no local COMET checkpoint here: not computed, never downloaded


def _tomlab(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tomlab", *args], capture_output=True, text=True, timeout=300)


def test_the_commands_import_then_score(records, tmp_path):
    out = tmp_path / "imported"
    proc = _tomlab("debate-import", "--format", "mad", "--dir", str(records), "--out", str(out), "--n-boot", "100")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["debates"] == 4 and summary["unreadable_replies"] == 1 and summary["ended_by"] == {"judge": 2, "moderator": 2}
    assert {p.name for p in out.iterdir()} == {f"{n}.parquet" for n in ("items", "debates", "turns", "judge", "problems", "moves")}
    base = tmp_path / "base.txt"
    base.write_text("\n".join(ITEMS["wrong_reference"]) + "\n")
    mad = tmp_path / "mad.txt"
    mad.write_text("\n".join(ITEMS["reference"]) + "\n")
    scores = tmp_path / "scores.csv"
    proc = _tomlab("debate-score", "--items", str(out / "items.parquet"), "--system", f"baseline={base}",
                   "--system", f"mad={mad}", "--baseline", "baseline", "--n-boot", "100", "--out", str(scores))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(scores).set_index("system")
    assert table.loc["mad", "diff"] == 1.0 and np.isclose(table.loc["mad", "bleu"], 100.0)
    short = tmp_path / "short.txt"
    short.write_text("one line\n")
    proc = _tomlab("debate-score", "--items", str(out / "items.parquet"), "--system", f"x={short}", "--out",
                   str(tmp_path / "x.parquet"))
    assert proc.returncode != 0 and "short.txt: 1 lines for 4 items" in proc.stderr
    assert not (tmp_path / "x.parquet").exists()
    proc = _tomlab("debate-score", "--items", str(out / "items.parquet"), "--system", f"x{short}", "--out",
                   str(tmp_path / "x.parquet"))
    assert proc.returncode != 0 and "NAME=PATH" in proc.stderr


def test_the_pipeline_rescores_a_released_folder_and_the_report_shows_it(tmp_path):
    from tests.mad_fixture import SYSTEMS
    from tests.test_pipeline import REPO, _snakemake
    from tomlab.manifest import Manifest
    from tomlab.report import debate_released as DR

    released = write_released(tmp_path / "checkout" / "Lexical_Ambiguity")
    cfg = tmp_path / "released.yaml"
    cfg.write_text(f"debate:\n  translation:\n    released: {{dir: {json.dumps(str(released))}}}\n")
    proc = _snakemake(tmp_path, "results/debate/released/scores.parquet", "--configfile",
                      str(REPO / "config/smoke.yaml"), str(cfg))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    scores = pd.read_parquet(tmp_path / "results/debate/released/scores.parquet")
    assert list(scores["system"]) == list(SYSTEMS) and (scores["n"] == 4).all()
    root = tmp_path / "results/debate/released"
    m = Manifest({"debate_released_scores": str(root / "scores.parquet"),
                  "debate_released_debates": str(root / "debates/debates.parquet"),
                  "debate_released_moves": str(root / "debates/moves.parquet"),
                  "debate_released_problems": str(root / "debates/problems.parquet")})
    setup = {"config": {"debate": {"translation": {"released": {"dir": str(released), "baseline": "baseline",
                                                                 "debate": "mad"}}}}}
    table = DR.scores_table(m, setup).set_index("system")
    assert table.loc["+ MAD", "SacreBLEU, paper"] == "29.15" and table.loc["+ MAD", "SacreBLEU, ours"] == "100.00"
    assert table.loc["GPT-3.5-Turbo", "change vs GPT-3.5-Turbo (points)"] == "-"
    assert table.loc["+ MAD", "change vs GPT-3.5-Turbo (points)"].startswith("+100.0")
    row = DR.verdict_row(m, setup).iloc[0]
    assert row["verdict"] == "supports the claim" and row["estimate [95% CI]"].startswith("+1.00")
    text = DR.commentary(m, setup)
    assert "recomputes the paper's SacreBLEU for 0 of 6" in text and "**supports the claim**" in text
    assert "the same way (+17.0 points)" in text and "1 could not be read" in text
    stress = pd.DataFrame({"doubt": ["d"], "experiment": ["e"], "statistic": ["s"], "estimate [95% CI]": ["x"],
                           "verdict": ["undermines it"], "evidence": ["v"]})
    both = DR.with_verdict(stress, m, setup)
    assert list(both["model"]) == ["this run's model", "MAD's released outputs (gpt-3.5-turbo)"]
    assert DR.with_verdict(stress, Manifest({}), setup) is stress
    assert set(DR.debates_table(m)["ended by"]) == {"judge", "moderator"}
    assert DR.moves_table(m)["n"].tolist() == [4, 3]
    # a baseline that is not a released system is refused before anything runs, by its key
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"debate:\n  translation:\n    released: {{dir: {json.dumps(str(released))}, baseline: gpt9}}\n")
    proc = _snakemake(tmp_path, "-n", "--configfile", str(REPO / "config/smoke.yaml"), str(bad))
    assert proc.returncode != 0 and "debate.translation.released.baseline: 'gpt9'" in proc.stdout + proc.stderr
