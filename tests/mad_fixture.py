"""Invented debate records and system outputs in the MAD repository's released format (its own files are
GPL-3.0 and never committed here): for the tests of tomlab.debate.released and the whole-DAG run."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

ITEMS = pd.DataFrame({
    "item_id": [0, 1, 2, 3],
    "source": ["他打了一个电话。", "这件事很难办。", "她很有水平。", "我们走着瞧。"],
    "reference": ["He made a phone call.", "This matter is hard to handle.", "She is very capable.",
                  "We will wait and see."],
    "wrong_reference": ["He hit a telephone.", "This thing is very difficult to do office.", "She has a high level.",
                        "We walk and look."],
    "target_language": ["English"] * 4,
})


def _moderator(pref: str, side: str = "") -> str:
    return str({"Whether there is a preference": pref, "Supported Side": side, "Reason": "It's fine.",
                "Correct Translation": ""})  # a Python dict's repr: single quotes, as released


def _record(i: int, rounds: list[str], judge: bool, base: str, final: str) -> dict:
    def side(n: int) -> list[dict]:
        msgs = [{"role": "system", "content": "You are a debater."}]
        for r in range(n):
            msgs += [{"role": "user", "content": f"round {r + 1}"}, {"role": "assistant", "content": f"reply {r + 1}"}]
        return msgs

    players = {"Affirmative side": side(len(rounds) + 1), "Negative side": side(len(rounds)),
               "Moderator": [{"role": "system", "content": "You are a moderator."}]}
    for r, reply in enumerate(rounds):
        players["Moderator"] += [{"role": "user", "content": f"round {r + 1}"}, {"role": "assistant", "content": reply}]
    if judge:
        players["Judge"] = [{"role": "system", "content": "You are a judge."},
                            {"role": "user", "content": "candidates"},
                            {"role": "assistant", "content": 'Affirmative: "a"\nNegative: "b"'},
                            {"role": "user", "content": "decide"},
                            {"role": "assistant", "content": json.dumps({"Reason": "b is right",
                                                                         "Correct Translation": final})}]
    row = ITEMS.iloc[i]
    return {"model_name": "gpt-3.5-turbo", "temperature": 0, "num_players": 3, "source": row["source"],
            "correct reference": row["reference"], "incorrect reference": row["wrong_reference"],
            "base translation": base, "debate translation": final, "reason": "because", "players": players}


def write_records(root: Path) -> Path:
    """Four invented debate records under ``root/MAD_Debate_Process`` (one moderator reply malformed)."""
    folder = root / "MAD_Debate_Process"
    folder.mkdir(parents=True)
    recs = {
        0: _record(0, [_moderator("No")] * 3, True, "He hit a telephone.", "He made a phone call."),  # moved right
        1: _record(1, [_moderator("No"), _moderator("Yes", "Negative")], False,
                   "This matter is hard to handle.", "This thing is very difficult to do office."),  # moved wrong
        2: _record(2, [_moderator("Yes", "Affirmative")], False, "She is very capable.", "She is very capable."),
        # a moderator reply that is not a dict literal (a call, which must never be evaluated)
        10: _record(3, ["__import__('os').system('touch PWNED')", _moderator("No")], True,
                    "We walk and look.", "We will wait and see."),
    }
    for i, rec in recs.items():
        (folder / f"{i}.json").write_text(json.dumps(rec, ensure_ascii=False), encoding="utf-8")
    (folder / "notes.json").write_text("{}")  # not a record: ignored
    return folder


SYSTEMS = ("gpt4", "baseline", "rerank", "maps", "self_reflect", "mad")


def write_released(root: Path) -> Path:
    """A whole released folder: the records, raw/ and one output file per system (``root`` returned)."""
    write_records(root)
    (root / "raw").mkdir()
    (root / "raw" / "lexical.zh-en.zh").write_text("\n".join(ITEMS["source"]) + "\n", encoding="utf-8")
    (root / "raw" / "lexical.zh-en.en").write_text("\n".join(ITEMS["reference"]) + "\n", encoding="utf-8")
    (root / "output").mkdir()
    right, wrong = list(ITEMS["reference"]), list(ITEMS["wrong_reference"])
    for k, name in enumerate(SYSTEMS):
        lines = [right[i] if (i + k) % 3 else wrong[i] for i in range(len(right))]
        if name == "mad":
            lines = right
        if name == "baseline":
            lines = wrong
        (root / "output" / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


