"""The debate paper's released outputs, read and rescored (Liang et al.'s Common MT lexical folder).

Two things were released beside the data: one output file per system (one translation per line, in the
order of the set) and, for MAD, the record of every debate (one JSON file per sentence).  This module
reads both into tomlab's tables, never evaluating anything it reads: the moderator's replies are
Python-style dicts with single quotes, parsed by :func:`parse_literal_dict`, a reader of string, number,
boolean and null literals only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomlab.debate.tasks import bleu_tokenizer, comet_score, contrastive_hits
from tomlab.schema import vocabulary
from tomlab.stats import bootstrap_ci

SIDES = {"Affirmative side": "affirmative", "Negative side": "negative", "Moderator": "moderator", "Judge": "judge"}


class ReleasedDataError(ValueError):
    """A released file that cannot be read as the format says; the message names the file and line."""


# --- system outputs ---------------------------------------------------------------------------------

def read_outputs(path: str | Path, n: int) -> list[str]:
    """One translation per line of ``path``, ``n`` of them (a trailing newline is fine; a missing or empty
    line, or a line too many, is an error naming the file and line)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ReleasedDataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    lines = [ln.removesuffix("\r") for ln in lines]
    for i, line in enumerate(lines, start=1):
        if not line.strip():
            raise ReleasedDataError(f"{path}, line {i}: empty line (one translation per line, aligned with the items)")
    if len(lines) != n:
        raise ReleasedDataError(f"{path}: {len(lines)} lines for {n} items (one translation per line, in the "
                                f"items' order){'' if len(lines) < n else f'; line {n + 1} is one too many'}")
    return lines


def score_systems(items: pd.DataFrame, outputs: Mapping[str, Sequence[str]], *, baseline: str | None = None,
                  n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per system: corpus BLEU (sacrebleu, the target language's tokeniser) and chrF against the
    correct references, and contrastive accuracy (the share of outputs closer, by sentence chrF, to the
    correct than to the incorrect reference) with its bootstrap interval, COMET where a local checkpoint is
    configured (``TOMLAB_COMET_MODEL``; NaN otherwise, nothing is downloaded); with ``baseline``, the paired
    difference in contrastive accuracy against that system, with its interval (same sentences resampled)."""
    import sacrebleu

    if baseline is not None and baseline not in outputs:
        raise ValueError(f"--baseline {baseline!r} is not one of the systems {sorted(outputs)}")
    refs = [str(r) for r in items["reference"]]
    wrong = [str(w) for w in items["wrong_reference"]]
    targets = set(items["target_language"]) if "target_language" in items else {"English"}
    tokenize = bleu_tokenizer(next(iter(targets))) if len(targets) == 1 else "13a"
    for name, hyps in outputs.items():
        if len(hyps) != len(refs):
            raise ValueError(f"system {name!r}: {len(hyps)} outputs for {len(refs)} items")
    hits = {name: contrastive_hits(list(hyps), refs, wrong) for name, hyps in outputs.items()}
    rows = []
    for name, hyps in outputs.items():
        low, high = bootstrap_ci(hits[name].astype(float), n_boot=n_boot, seed=seed)
        row: dict[str, Any] = {
            "system": name, "n": len(hyps),
            "bleu": sacrebleu.corpus_bleu(list(hyps), [refs], tokenize=tokenize).score,
            "chrf": sacrebleu.corpus_chrf(list(hyps), [refs]).score,
            "contrastive": float(hits[name].mean()) if len(hyps) else float("nan"),
            "contrastive_low": low, "contrastive_high": high,
        }
        comet = comet_score(list(hyps), items)  # only with a local checkpoint (TOMLAB_COMET_MODEL)
        row["comet"] = float("nan") if comet is None else float(comet)
        if baseline is not None:
            diff = hits[name].astype(float) - hits[baseline].astype(float)
            d_low, d_high = bootstrap_ci(diff, n_boot=n_boot, seed=seed)
            row.update(diff=float(diff.mean()), diff_low=d_low, diff_high=d_high)
        rows.append(row)
    return pd.DataFrame(rows)


# --- a Python-style dict, read without evaluating it ----------------------------------------------------

_TOKEN = re.compile(r"""\s*(?:(?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"""
                    r"""|(?P<word>(?:True|False|None|true|false|null)\b)|(?P<punct>[{}\[\]:,]))""", re.DOTALL)
_SPACE = re.compile(r"\s*")
_WORDS = {"True": True, "False": False, "None": None, "true": True, "false": False, "null": None}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "\\": "\\", "'": "'", '"': '"', "/": "/",
            "0": "\0"}
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|.)", re.DOTALL)


def _unescape(m: re.Match[str]) -> str:
    code = m.group(1)
    if len(code) > 1:  # \uXXXX (JSON, Python) or \xHH (Python)
        return chr(int(code[1:], 16))
    return _ESCAPES.get(code, "\\" + code)


def _unquote(token: str) -> str:
    return _ESCAPE.sub(_unescape, token[1:-1])


def parse_literal_dict(text: str) -> dict[str, Any]:
    """A dict written as a Python or JSON literal (single or double quotes with their escapes; numbers;
    True/False/None or true/false/null; nested lists and dicts, at most :data:`MAX_DEPTH` deep), read
    token by token: nothing is evaluated or imported.  Raises ValueError on anything else."""
    tokens: list[tuple[str, Any]] = []
    pos, text = 0, str(text).strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"unexpected text at character {pos}: {text[pos:pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        raw = m.group(kind)
        value: Any = {"str": lambda: _unquote(raw), "num": lambda: float(raw) if any(c in raw for c in ".eE") else int(raw),
                      "word": lambda: _WORDS[raw], "punct": lambda: raw}[kind]()
        tokens.append((kind, value))
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]
    value, end = _value(tokens, 0)
    if end != len(tokens):
        raise ValueError("text after the dict")
    if not isinstance(value, dict):
        raise ValueError("not a dict")
    return value


#: Deeper nesting than this is refused (a reply is a flat dict; this bounds the recursion).
MAX_DEPTH = 50


def _value(tokens: list[tuple[str, Any]], i: int, depth: int = 0) -> tuple[Any, int]:
    if i >= len(tokens):
        raise ValueError("the text ends inside a value")
    if depth > MAX_DEPTH:
        raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
    kind, tok = tokens[i]
    if kind != "punct":
        return tok, i + 1
    if tok not in "{[":
        raise ValueError(f"unexpected {tok!r}")
    close, out_d, out_l = ("}" if tok == "{" else "]"), {}, []
    i += 1
    while True:
        if i < len(tokens) and tokens[i] == ("punct", close):
            return (out_d if close == "}" else out_l), i + 1
        if close == "}":
            key, i = _value(tokens, i, depth + 1)
            if not isinstance(key, (str, int, float, bool)) or key is None or tokens[i:i + 1] != [("punct", ":")]:
                raise ValueError("a dict entry is not key: value")
            out_d[key], i = _value(tokens, i + 1, depth + 1)
        else:
            item, i = _value(tokens, i, depth + 1)
            out_l.append(item)
        if i < len(tokens) and tokens[i] == ("punct", ","):
            i += 1
        elif not (i < len(tokens) and tokens[i] == ("punct", close)):
            raise ValueError(f"expected ',' or {close!r}")


# --- the debate records -----------------------------------------------------------------------------------

def _record_files(folder: Path) -> list[tuple[int, Path]]:
    found = []
    for p in folder.glob("*.json"):
        if p.stem.isdigit():
            found.append((int(p.stem), p))
    if not found:
        raise ReleasedDataError(f"{folder}: no debate records (<number>.json)")
    return sorted(found)


def _field(record: Mapping[str, Any], key: str, path: Path) -> str:
    if key not in record:
        raise ReleasedDataError(f"{path}: no {key!r} field")
    return str(record[key])


def read_mad_records(folder: str | Path) -> dict[str, pd.DataFrame]:
    """Every debate record in ``folder`` as tomlab's tables: ``items`` (source and both references, for
    scoring), ``debates`` (one row per debate), ``turns`` (every message) and ``judge`` (the judge's
    verdicts), plus ``problems`` (each moderator or judge reply that could not be read)."""
    folder = Path(folder)
    items, debates, turns, judges, problems = [], [], [], [], []
    for rid, path in _record_files(folder):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ReleasedDataError(f"{path}: not a JSON record ({err})") from None
        if not isinstance(record, dict) or not isinstance(record.get("players"), dict):
            raise ReleasedDataError(f"{path}: no 'players' object")
        items.append({"item_id": rid, "source": _field(record, "source", path),
                      "reference": _field(record, "correct reference", path),
                      "wrong_reference": _field(record, "incorrect reference", path),
                      "source_language": "Chinese", "target_language": "English"})
        decisions: list[dict[str, Any]] = []
        for player, messages in record["players"].items():
            side = SIDES.get(player, str(player).lower())
            if not isinstance(messages, list) or not all(isinstance(msg, dict) for msg in messages):
                raise ReleasedDataError(f"{path}: players.{player} is not a list of messages (role, content)")
            rnd = 0
            for turn, msg in enumerate(messages):
                role, content = str(msg.get("role", "")), str(msg.get("content", ""))
                if role == "assistant":
                    rnd += 1
                turns.append({"id": rid, "side": side, "turn": turn, "round": rnd if role == "assistant" else rnd + 1,
                              "role": role, "content": content})
                if side == "moderator" and role == "assistant":
                    try:
                        decisions.append(parse_literal_dict(content))
                    except ValueError as err:
                        decisions.append({})
                        problems.append({"id": rid, "side": side, "round": rnd, "problem": str(err)})
        said_yes = [d for d in decisions if str(d.get("Whether there is a preference", "")).strip().lower() == "yes"]
        judge_msgs = [str(m.get("content", "")) for m in record["players"].get("Judge", []) or []
                      if m.get("role") == "assistant"]
        verdict: dict[str, Any] = {}
        if judge_msgs:
            try:
                verdict = parse_literal_dict(judge_msgs[-1])
            except ValueError as err:
                problems.append({"id": rid, "side": "judge", "round": len(judge_msgs), "problem": str(err)})
            judges.append({"id": rid, "candidates": judge_msgs[0] if len(judge_msgs) > 1 else "",
                           "reason": str(verdict.get("Reason", "")),
                           "translation": str(verdict.get("Correct Translation", verdict.get("debate_translation", ""))),
                           "parsed": bool(verdict)})
        supported = str(said_yes[-1].get("Supported Side", "")).strip().lower() if said_yes else ""
        debates.append({
            "id": rid, "source": items[-1]["source"],
            "base_translation": _field(record, "base translation", path),
            "final_translation": _field(record, "debate translation", path),
            "rounds": len(decisions),
            "decisions": json.dumps(decisions, ensure_ascii=False),
            "ended_by": "judge" if judge_msgs else "moderator",
            "supported_side": supported.removesuffix(" side") if supported else "",
            "reason": str(record.get("reason", "")),
            "model": str(record.get("model_name", "")),
        })
    return {"items": pd.DataFrame(items), "debates": pd.DataFrame(debates), "turns": pd.DataFrame(turns),
            "judge": pd.DataFrame(judges, columns=["id", "candidates", "reason", "translation", "parsed"]),
            "problems": pd.DataFrame(problems, columns=["id", "side", "round", "problem"])}


def debate_moves(debates: pd.DataFrame, items: pd.DataFrame, *, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """What the debates did to the translation: how often the final one differs from the base one, and the
    contrastive accuracy before and after (paired: the change's interval resamples the same sentences),
    over every debate and over those whose translation moved."""
    merged = debates.merge(items, left_on="id", right_on="item_id", how="inner")
    refs, wrong = list(merged["reference"]), list(merged["wrong_reference"])
    before = contrastive_hits(list(merged["base_translation"]), refs, wrong).astype(float)
    after = contrastive_hits(list(merged["final_translation"]), refs, wrong).astype(float)
    moved = (merged["base_translation"].str.strip() != merged["final_translation"].str.strip()).to_numpy()
    rows = []
    for label, mask in (("every debate", np.ones(len(merged), dtype=bool)), ("translation moved", moved)):
        b, a = before[mask], after[mask]
        low, high = bootstrap_ci(a - b, n_boot=n_boot, seed=seed) if mask.any() else (float("nan"), float("nan"))
        rows.append({"debates": label, "n": int(mask.sum()), "moved": float(moved[mask].mean()) if mask.any() else float("nan"),
                     "contrastive_before": float(b.mean()) if mask.any() else float("nan"),
                     "contrastive_after": float(a.mean()) if mask.any() else float("nan"),
                     "change": float((a - b).mean()) if mask.any() else float("nan"),
                     "change_low": low, "change_high": high,
                     "toward_correct": int(((a - b) > 0).sum()), "away_from_correct": int(((a - b) < 0).sum())})
    return pd.DataFrame(rows)


#: The claim the released outputs can test (Liang et al.: debate resolves the ambiguous sense better).
CLAIM = "multi-agent debate picks the right sense of an ambiguous word more often than its own baseline"


def sense_verdict(scores: pd.DataFrame, debate: str, baseline: str) -> dict[str, Any]:
    """The claim's verdict from the paired difference in contrastive accuracy of ``debate`` against
    ``baseline`` (``scores`` from :func:`score_systems` with that baseline): an interval above 0 supports
    it, one below 0 undermines it, one around 0 is inconclusive at this scale."""
    verdicts = vocabulary("verdict")
    rows = scores.set_index("system")
    if debate not in rows.index or baseline not in rows.index or "diff" not in rows.columns:
        raise ValueError(f"the scores hold no paired difference of {debate!r} against {baseline!r}")
    r = rows.loc[debate]
    low, high = float(r["diff_low"]), float(r["diff_high"])
    verdict = verdicts[0] if low > 0 else verdicts[1] if high < 0 else verdicts[2]
    return {"claim": CLAIM, "statistic": f"contrastive accuracy, {debate} minus {baseline} (paired, same sentences)",
            "estimate": float(r["diff"]), "ci_low": low, "ci_high": high, "n": int(r["n"]), "verdict": verdict}
