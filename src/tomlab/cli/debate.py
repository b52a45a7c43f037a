"""Subcommands for the debate."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.debate.protocol import METHODS, SIDES
from tomlab.schema import default as schema_default

ROLES = (*SIDES, "judge")


TRANSLATION_FORMAT = "End with a line of the form 'Translation: <your French translation>'."


def _question(task: str, row: Any) -> str:
    if task == "translation":
        return f"Translate this English sentence into French: {row.source}"
    return str(row.question)


def cmd_debate_tasks(args: argparse.Namespace) -> None:
    from tomlab.debate.tasks import (
        example_translations,
        generate_arithmetic,
        load_arithmetic_json,
        load_translation,
    )

    if args.task == "arithmetic":
        rows = load_arithmetic_json(args.file) if args.file else generate_arithmetic(args.n, args.seed, args.families)
    else:
        rows = load_translation(args.file) if args.file else example_translations()
    if args.max_items:
        rows = rows.head(args.max_items)
    io.write_parquet(args.out, rows)


def cmd_debate_run(args: argparse.Namespace) -> None:
    from tomlab.backends.lm import GenerationConfig
    from tomlab.backends.lockstep import run_lockstep
    from tomlab.debate.protocol import (
        DebateConfig,
        chain_of_thought,
        debate,
        direct,
        self_consistency,
        self_reflection,
    )
    from tomlab.debate.tasks import final_translation

    rows = pd.read_parquet(args.tasks)
    settings = json.loads(args.debate_json) if args.debate_json else {}
    from tomlab.backends.build import build_backends

    models = build_backends(json.loads(args.models_json), ROLES, where="debate.models", batch_size=args.batch_size,
                            completion_cache=args.completion_cache, cache_dir=args.cache_dir)
    fmt = {"answer_format": TRANSLATION_FORMAT} if args.task == "translation" else {}
    gen = GenerationConfig(max_new_tokens=settings.get("max_new_tokens", 160), chat_template=settings.get("chat_template", True))
    method = args.method
    if method in ("debate", "debate_forced"):
        known = set(DebateConfig.__dataclass_fields__) - {"adaptive_break", "answer_format"}
        cfg = DebateConfig(adaptive_break=method == "debate",
                           **{k: v for k, v in settings.items() if k in known}, **fmt)
        convs = [debate(r.id, _question(args.task, r), cfg) for r in rows.itertuples()]
    elif method == "direct":
        convs = [direct(r.id, _question(args.task, r), gen, **fmt) for r in rows.itertuples()]
    elif method == "cot":
        convs = [chain_of_thought(r.id, _question(args.task, r), gen, **fmt) for r in rows.itertuples()]
    elif method == "self_consistency":
        vote = (lambda texts: texts[0]) if args.task == "translation" else None  # no vote over free text
        convs = [self_consistency(r.id, _question(args.task, r), gen, k=settings.get("sc_samples", 5),
                                  temperature=settings.get("sc_temperature", 0.7), vote=vote, **fmt)
                 for r in rows.itertuples()]
    else:
        convs = [self_reflection(r.id, _question(args.task, r), gen, iterations=settings.get("reflection_iterations", 1),
                                 **fmt) for r in rows.itertuples()]
    results = run_lockstep(convs, models if method.startswith("debate") else models["default"], progress=True,
                           desc=f"{args.task} {method}")
    answers, turns, judge = [], [], []
    for res in results:
        final = res.final_answer
        answers.append({"question_id": res.question_id, "method": method, "final_answer": final,
                        "translation": final_translation(final) if args.task == "translation" else "",
                        "prompt_tokens": res.prompt_tokens, "completion_tokens": res.completion_tokens,
                        "preference": getattr(res, "preference", None), "rounds_run": getattr(res, "rounds_run", 0),
                        "final_source": getattr(res, "final_source", "")})
        for t in getattr(res, "turns", []):
            turns.append({"question_id": res.question_id, "method": method, **t})
        for j in getattr(res, "judge", []):
            judge.append({"question_id": res.question_id, "method": method, **j})
    with io.atomic_path(args.transcripts) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for res in results:
            fh.write(json.dumps({"method": method, **vars(res)}, default=str) + "\n")
    io.write_parquet(args.out_turns, pd.DataFrame(turns, columns=["question_id", "method", "round", "debater",
                                                                  "speaker", "text"]))
    io.write_parquet(args.out_judge, pd.DataFrame(judge, columns=["question_id", "method", "round", "mode", "raw",
                                                                  "parsed", "error", "preference", "answer"]))
    io.write_parquet(args.out, pd.DataFrame(answers))
    backends: dict[int, tuple[str, Any]] = {}
    for role, lm in models.items():  # roles sharing a backend share its usage: report it once
        backends.setdefault(id(lm), (role, lm))
    usage = {role: lm.usage.as_dict() for role, lm in backends.values()}
    print(json.dumps({"task": args.task, "method": method, "questions": len(results), "usage": usage}))


def cmd_debate_tables(args: argparse.Namespace) -> None:
    from tomlab.debate.tables import debate_tables

    answers = pd.concat([pd.read_parquet(p) for p in args.answers], ignore_index=True)
    turns = pd.concat([pd.read_parquet(p) for p in args.turns], ignore_index=True)
    tables = debate_tables(args.task, pd.read_parquet(args.tasks), answers, turns, json.loads(args.models_json),
                           n_boot=args.n_boot, seed=args.seed)
    io.write_parquet(args.out_scored, tables["scored"])
    io.write_parquet(args.out_accuracy, tables["accuracy"])
    io.write_parquet(args.out_disagreement, tables["disagreement"])
    io.write_parquet(args.out_judge, tables["judge"])


def add_commands(sub: Any) -> None:
    from tomlab.debate.tasks import FAMILIES

    p = sub.add_parser("debate-tasks", help="counter-intuitive arithmetic instances or translation rows")
    p.add_argument("--task", choices=["arithmetic", "translation"], required=True)
    p.add_argument("--file", help="the original arithmetic JSON, or a translation CSV/TSV/JSONL")
    p.add_argument("--n", type=int, default=schema_default("debate.arithmetic.n"), help="generated arithmetic instances")
    p.add_argument("--seed", type=int, default=schema_default("debate.arithmetic.seed"))
    p.add_argument("--families", nargs="+", choices=sorted(FAMILIES))
    p.add_argument("--max-items", type=int)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_debate_tasks)

    p = sub.add_parser("debate-run", help="answer every task item with one method (a baseline or the debate)")
    p.add_argument("--task", choices=["arithmetic", "translation"], required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--method", choices=METHODS, required=True)
    p.add_argument("--models-json", required=True, help='{"default": model, "affirmative": ..., "negative": ..., "judge": ...}')
    p.add_argument("--debate-json", help="the config's debate section as JSON (rounds, tit_for_tat, ...)")
    p.add_argument("--batch-size", type=int, default=schema_default("debate.batch_size"))
    p.add_argument("--cache-dir")
    p.add_argument("--completion-cache")
    p.add_argument("--out", required=True)
    p.add_argument("--out-turns", required=True)
    p.add_argument("--out-judge", required=True)
    p.add_argument("--transcripts", required=True, help="JSONL, one line per question")
    p.set_defaults(func=cmd_debate_run)

    p = sub.add_parser("debate-tables", help="accuracy, disagreement by round, judge preference")
    p.add_argument("--task", choices=["arithmetic", "translation"], required=True)
    p.add_argument("--tasks", required=True)
    p.add_argument("--answers", nargs="+", required=True)
    p.add_argument("--turns", nargs="+", required=True)
    p.add_argument("--models-json", required=True)
    p.add_argument("--n-boot", type=int, default=schema_default("debate.n_boot"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-scored", required=True)
    p.add_argument("--out-accuracy", required=True)
    p.add_argument("--out-disagreement", required=True)
    p.add_argument("--out-judge", required=True)
    p.set_defaults(func=cmd_debate_tables)
    _add_plot_command(sub)


def cmd_plot_debate(args: argparse.Namespace) -> None:
    from tomlab.figures.debate import plot_debate_accuracy, plot_debate_disagreement

    plot_debate_accuracy(pd.read_parquet(args.accuracy), args.out_accuracy)
    plot_debate_disagreement(pd.read_parquet(args.disagreement), args.out_disagreement)


def _add_plot_command(sub: Any) -> None:
    p = sub.add_parser("plot-debate", help="accuracy per method and disagreement by round")
    p.add_argument("--accuracy", required=True)
    p.add_argument("--disagreement", required=True)
    p.add_argument("--out-accuracy", required=True, help="figure path without extension")
    p.add_argument("--out-disagreement", required=True, help="figure path without extension")
    p.set_defaults(func=cmd_plot_debate)
