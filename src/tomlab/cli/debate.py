"""Subcommands for the debate."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.backends.batching import parse_batch_size
from tomlab.cli.common import N_BOOT, int_range, json_object
from tomlab.schema import default as schema_default
from tomlab.schema import vocabulary

#: The columns of a task's items (``debate-tasks``) that running and scoring it read.
RUN_COLUMNS = {"arithmetic": ("id", "question"), "translation": ("id", "source")}
SCORE_COLUMNS = {"arithmetic": ("id", "family", "answers", "intuitive"),
                 "translation": ("id", "source", "reference", "wrong_reference")}
#: The columns of a method's answers and turns (``debate-run``) that the tables read.
ANSWER_COLUMNS = ("question_id", "method", "final_answer", "prompt_tokens", "completion_tokens", "preference")
TURN_COLUMNS = ("question_id", "method", "round", "debater", "text")
#: The columns of the accuracy table the figure reads (``debate-tables``).
ACCURACY_COLUMNS = ("method", "accuracy", "ci_low", "ci_high")


def _task_items(path: str, columns: tuple[str, ...]) -> pd.DataFrame:
    """A task's items (``--tasks``): the ``columns``, at least one item, and one item per id."""
    from tomlab.debate.tasks import check_unique_ids

    rows = io.read_table(path, columns, flag="--tasks")
    if rows.empty:
        raise ValueError(f"--tasks {path}: no items")
    check_unique_ids(list(rows["id"]), f"--tasks {path}", [f"row {i}" for i in range(1, len(rows) + 1)])
    return rows


def _models(text: str) -> dict[str, Any]:
    """``--models-json``: a JSON object with a ``default`` model."""
    models = json_object(text, "--models-json")
    if "default" not in models:
        raise ValueError("--models-json: a 'default' model is required")
    return models


def cmd_debate_tasks(args: argparse.Namespace) -> None:
    from tomlab.debate.tasks import (
        EXAMPLE_PAIR,
        example_translations,
        generate_arithmetic,
        load_arithmetic_json,
        load_translation,
    )

    if args.task == "arithmetic":
        rows = load_arithmetic_json(args.file) if args.file else generate_arithmetic(args.n, args.seed, args.families)
    elif args.file:
        rows = load_translation(args.file, args.source_language, args.target_language)
    elif (args.source_language, args.target_language) != EXAMPLE_PAIR:
        raise ValueError(f"debate.translation: the built-in examples are {EXAMPLE_PAIR[0]} -> {EXAMPLE_PAIR[1]}, not "
                         f"{args.source_language} -> {args.target_language}; give a file of that pair (--file)")
    else:
        rows = example_translations()
    if args.max_items:
        rows = rows.head(args.max_items)
    io.write_parquet(args.out, rows)


def cmd_debate_run(args: argparse.Namespace) -> None:
    from tomlab.backends.build import build_backends
    from tomlab.debate.run import ROLES, run_method

    rows = _task_items(args.tasks, RUN_COLUMNS[args.task])
    settings = json_object(args.debate_json, "--debate-json")
    models = build_backends(_models(args.models_json), ROLES, where="debate.models", batch_size=args.batch_size,
                            completion_cache=args.completion_cache, cache_dir=args.cache_dir)
    run = run_method(args.task, args.method, rows, models, settings)
    with io.atomic_path(args.transcripts) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps({"method": args.method, **vars(res)}, default=str) + "\n" for res in run.results)
    io.write_parquet(args.out_turns, run.turns)
    io.write_parquet(args.out_judge, run.judge)
    io.write_parquet(args.out, run.answers)
    print(json.dumps({"task": args.task, "method": args.method, "questions": len(run.results), "usage": run.usage}))


def cmd_debate_tables(args: argparse.Namespace) -> None:
    from tomlab.debate.tables import debate_tables

    tasks = _task_items(args.tasks, SCORE_COLUMNS[args.task])
    answer_columns = (*ANSWER_COLUMNS, "translation") if args.task == "translation" else ANSWER_COLUMNS
    answers = pd.concat([io.read_table(p, answer_columns, flag="--answers") for p in args.answers], ignore_index=True)
    turns = pd.concat([io.read_table(p, TURN_COLUMNS, flag="--turns") for p in args.turns], ignore_index=True)
    tables = debate_tables(args.task, tasks, answers, turns, _models(args.models_json), n_boot=args.n_boot,
                           seed=args.seed)
    io.write_parquet(args.out_scored, tables["scored"])
    io.write_parquet(args.out_accuracy, tables["accuracy"])
    io.write_parquet(args.out_disagreement, tables["disagreement"])
    io.write_parquet(args.out_judge, tables["judge"])


def _write_table(path: str, table: pd.DataFrame) -> None:
    """Parquet, or CSV when the path ends in .csv."""
    if str(path).lower().endswith(".csv"):
        with io.atomic_path(path) as tmp:
            table.to_csv(tmp, index=False)
    else:
        io.write_parquet(path, table)


def _read_items(path: str) -> pd.DataFrame:
    from tomlab.debate.tasks import load_translation

    if str(path).lower().endswith(".parquet"):
        return io.read_table(path, ("reference", "wrong_reference"), flag="--items")
    return load_translation(path, "Chinese", "English")


def cmd_debate_score(args: argparse.Namespace) -> None:
    from tomlab.cli.report import _named
    from tomlab.debate.released import read_outputs, score_systems

    items = _read_items(args.items)
    outputs = {name: read_outputs(path, len(items)) for name, path in _named(args.system, "--system").items()}
    table = score_systems(items, outputs, baseline=args.baseline, n_boot=args.n_boot, seed=args.seed)
    _write_table(args.out, table)
    print(table.to_string(index=False, float_format=lambda x: f"{x:.2f}"))


def cmd_debate_import(args: argparse.Namespace) -> None:
    from pathlib import Path

    from tomlab.debate.released import debate_moves, read_mad_records

    tables = read_mad_records(args.dir)
    tables["moves"] = debate_moves(tables["debates"], tables["items"], n_boot=args.n_boot, seed=args.seed)
    with io.atomic_dir(args.out) as tmp:
        for name, table in tables.items():
            io.write_parquet(Path(tmp) / f"{name}.parquet", table)
    debates = tables["debates"]
    print(json.dumps({"debates": len(debates), "turns": len(tables["turns"]), "judged": len(tables["judge"]),
                      "unreadable_replies": len(tables["problems"]),
                      "ended_by": debates["ended_by"].value_counts().to_dict()}))


def add_commands(sub: Any) -> None:
    from tomlab.debate.tasks import FAMILIES

    p = sub.add_parser("debate-tasks", help="counter-intuitive arithmetic instances or translation rows")
    p.add_argument("--task", choices=vocabulary("debate_task"), required=True)
    p.add_argument("--file", help="the original arithmetic JSON, or a translation JSON/JSONL/CSV/TSV")
    p.add_argument("--n", type=int_range(1, 1_000_000), default=schema_default("debate.arithmetic.n"),
                   help="generated arithmetic instances")
    p.add_argument("--seed", type=int, default=schema_default("debate.arithmetic.seed"))
    p.add_argument("--families", nargs="+", choices=sorted(FAMILIES))
    p.add_argument("--source-language", default=schema_default("debate.translation.source_language"),
                   help="translation: the language of the source sentences (stored with each item)")
    p.add_argument("--target-language", default=schema_default("debate.translation.target_language"),
                   help="translation: the language to translate into (stored with each item)")
    p.add_argument("--max-items", type=int_range(1))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_debate_tasks)

    p = sub.add_parser("debate-run", help="answer every task item with one method (a baseline or the debate)")
    p.add_argument("--task", choices=vocabulary("debate_task"), required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--method", choices=vocabulary("debate_method"), required=True)
    p.add_argument("--models-json", required=True, help='{"default": model, "affirmative": ..., "negative": ..., "judge": ...}')
    p.add_argument("--debate-json", help="the config's debate section as JSON (rounds, tit_for_tat, ...)")
    p.add_argument("--batch-size", type=parse_batch_size, default=schema_default("debate.batch_size"),
                   help="prompts generated at once: an integer, or auto (the backend chooses)")
    p.add_argument("--cache-dir")
    p.add_argument("--completion-cache")
    p.add_argument("--out", required=True)
    p.add_argument("--out-turns", required=True)
    p.add_argument("--out-judge", required=True)
    p.add_argument("--transcripts", required=True, help="JSONL, one line per question")
    p.set_defaults(func=cmd_debate_run)

    p = sub.add_parser("debate-tables", help="accuracy, disagreement by round, judge preference")
    p.add_argument("--task", choices=vocabulary("debate_task"), required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--answers", nargs="+", required=True)
    p.add_argument("--turns", nargs="+", required=True)
    p.add_argument("--models-json", required=True)
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("debate.n_boot"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-scored", required=True)
    p.add_argument("--out-accuracy", required=True)
    p.add_argument("--out-disagreement", required=True)
    p.add_argument("--out-judge", required=True)
    p.set_defaults(func=cmd_debate_tables)
    _add_plot_command(sub)
    _add_released_commands(sub)


def _add_released_commands(sub: Any) -> None:
    p = sub.add_parser("debate-score", help="BLEU, chrF and contrastive accuracy of translation outputs (one per line)")
    p.add_argument("--items", required=True, help="items with source, reference, wrong_reference: parquet (e.g. "
                   "debate-import's items.parquet), JSON, JSONL, CSV or TSV")
    p.add_argument("--system", action="append", required=True, metavar="NAME=FILE",
                   help="a system's outputs, one translation per line in the items' order (repeatable)")
    p.add_argument("--baseline", default=None, help="a system's NAME: the paired difference in contrastive accuracy")
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("debate.n_boot"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="parquet, or CSV by its suffix")
    p.set_defaults(func=cmd_debate_score)

    p = sub.add_parser("debate-import", help="released debate records (MAD's per-sentence JSON) as tomlab's tables")
    p.add_argument("--format", choices=["mad"], default="mad")
    p.add_argument("--dir", required=True, help="the folder of <number>.json records (MAD_Debate_Process)")
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("debate.n_boot"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="folder for items, debates, turns, judge, problems and moves (.parquet)")
    p.set_defaults(func=cmd_debate_import)


def cmd_plot_debate(args: argparse.Namespace) -> None:
    from tomlab.debate.tables import DISAGREEMENT_COLUMNS
    from tomlab.figures.debate import plot_debate_accuracy, plot_debate_disagreement

    plot_debate_accuracy(io.read_table(args.accuracy, ACCURACY_COLUMNS, flag="--accuracy"), args.out_accuracy)
    plot_debate_disagreement(io.read_table(args.disagreement, DISAGREEMENT_COLUMNS, flag="--disagreement"),
                             args.out_disagreement)


def _add_plot_command(sub: Any) -> None:
    p = sub.add_parser("plot-debate", help="accuracy per method and disagreement by round")
    p.add_argument("--accuracy", required=True)
    p.add_argument("--disagreement", required=True)
    p.add_argument("--out-accuracy", required=True, help="figure path without extension")
    p.add_argument("--out-disagreement", required=True, help="figure path without extension")
    p.set_defaults(func=cmd_plot_debate)
