"""Subcommands for BigToM data and evaluation."""

from __future__ import annotations

import argparse
import shutil
from typing import Any

from tomlab import io
from tomlab.cli.common import _add_answer_args, _generation, _items, _model_cfg, _print_usage, int_range, share
from tomlab.schema import default as schema_default
from tomlab.schema import vocabulary


def cmd_generate_stories(args: argparse.Namespace) -> None:
    from tomlab.bigtom.stories import write_generated

    write_generated(args.out, n=args.n, seed=args.seed)


def cmd_import_bigtom(args: argparse.Namespace) -> None:
    from tomlab.bigtom.raw import read_raw

    read_raw(args.csv)  # validates; raises naming file and line
    with io.atomic_path(args.out) as tmp:
        shutil.copyfile(args.csv, tmp)


def cmd_bigtom_conditions(args: argparse.Namespace) -> None:
    from tomlab.bigtom.conditions import conditions_from_csv

    paths = conditions_from_csv(args.csv, args.out)
    print(f"wrote {len(paths)} condition files under {args.out}")


def cmd_eval_items(args: argparse.Namespace) -> None:
    from tomlab.bigtom.evaluation import build_items

    items = build_items(args.conditions, eval_fraction=args.eval_fraction, seed=args.seed,
                        max_stories=args.max_stories, protocol=args.protocol, parser=args.parser)
    io.write_parquet(args.out, items)


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tomlab.backends.build import generator, load_local
    from tomlab.bigtom.evaluation import evaluate_items, mode_tables

    items = _items(args.items)
    spec = _model_cfg(args)
    if "base_url" in spec:  # a served model answers by generation only: no log-likelihoods over a server
        from tomlab.backends.build import build_backend

        if set(args.modes) != {"generation"}:
            raise SystemExit("tomlab: a served model is evaluated by generation only: pass --modes generation")
        loaded, lm = None, build_backend(spec, completion_cache=args.completion_cache, where="evaluation.served")
    else:
        loaded = load_local(spec, cache_dir=args.cache_dir)
        lm = generator(loaded, args.batch_size, args.completion_cache)
    scored = evaluate_items(loaded, items, lm, _generation(args, items), modes=args.modes, batch_size=args.batch_size)
    table = mode_tables(scored, n_boot=args.n_boot, seed=args.seed)
    io.write_parquet(args.out, scored)
    io.write_parquet(args.out_table, table)
    _print_usage(lm)


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers."""
    p = sub.add_parser("generate-stories", help="write BigToM-format stories from tomlab's own templates")
    p.add_argument("--n", type=int_range(1, 1_000_000), required=True)
    p.add_argument("--seed", type=int, default=schema_default("stories.seed"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_generate_stories)

    p = sub.add_parser("import-bigtom", help="validate a raw BigToM file and copy it into the results")
    p.add_argument("--csv", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_import_bigtom)

    p = sub.add_parser("bigtom-conditions", help="build the 25 BigToM condition files from a raw file")
    p.add_argument("--csv", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bigtom_conditions)

    p = sub.add_parser("eval-items", help="BigToM multiple-choice items on the evaluation split")
    p.add_argument("--conditions", required=True)
    p.add_argument("--eval-fraction", type=share, default=schema_default("split.eval_fraction"))
    p.add_argument("--max-stories", type=int_range(1), default=None)
    p.add_argument("--protocol", default=schema_default("evaluation.protocol"), choices=vocabulary("eval_protocol"),
                   help="original: the released prompt, option order and parser; tomlab: this project's")
    p.add_argument("--parser", default=schema_default("evaluation.parser"), choices=vocabulary("answer_parser"),
                   help="headline parser of generated answers (default: the protocol's)")
    p.add_argument("--seed", type=int, default=schema_default("evaluation.seed"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_eval_items)

    p = sub.add_parser("evaluate", help="answer the items (generation and log-likelihood) and score them")
    _add_answer_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--out-table", required=True)
    p.set_defaults(func=cmd_evaluate)
