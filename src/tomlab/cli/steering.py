"""Subcommands for steering."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import pandas as pd

from tomlab import io
from tomlab.cli.common import (
    HEAD_COLUMNS,
    N_BOOT,
    TOP_K,
    _add_answer_args,
    _add_direction_args,
    _add_model_args,
    _add_probe_hparams,
    _add_shared_prefix,
    _by_task,
    _chat_template,
    _generation,
    _items,
    _kinds,
    _load_split,
    _model_cfg,
    _task_activations,
    int_range,
)

#: The columns of the scored items the steering table reads: the baseline's and the steered runs'.
BASELINE_COLUMNS = ("item_id", "task", "condition")
STEERED_COLUMNS = ("source_task", "task", "direction", "site", "condition", "item_id", "alpha")
#: The columns of the figures' tables (``sweep``, ``cross-task``, ``mechanism``).
SWEEP_COLUMNS = ("task", "direction", "condition", "mode", "alpha", "accuracy", "ci_low", "ci_high")
CORRELATION_COLUMNS = ("target", "task_a", "task_b", "pearson_r")
LETTER_COLUMNS = ("direction", "condition", "delta_correct", "delta_wrong")
PROJECTION_COLUMNS = ("story_id", "condition", "position", "token", "z")
from tomlab.schema import default as schema_default


def cmd_directions(args: argparse.Namespace) -> None:
    from tomlab.steering.directions import build_direction_sets, save_direction_sets

    samples, acts = _task_activations(args.samples, args.activations)
    is_val = _load_split(samples, args.split)
    heads = io.read_table(args.heads, HEAD_COLUMNS, flag="--heads")
    sets = build_direction_sets(
        np.asarray(acts, dtype=np.float32), samples, heads, _kinds(args.kinds), k=args.top_k, is_val=is_val, seed=args.seed,
        C_binary=args.C_binary, C_joint=args.C_joint, max_iter=args.max_iter,
    )
    save_direction_sets(args.out, sets)
    print(json.dumps({kind: entry.heads.tolist() for kind, entry in sets.items()}))


def cmd_steer(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import steer_pairs

    direction_paths = _by_task(args.directions, "--directions")
    activation_paths = _by_task(args.activations, "--activations")
    pairs = []
    for pair in args.pairs:
        source, sep, target = pair.partition(":")
        if not sep or source not in direction_paths or target not in activation_paths:
            raise SystemExit(f"tomlab: --pairs entry {pair!r} needs --directions for {source!r} and "
                             f"--activations for {target!r}")
        pairs.append((source, target))
    kinds = _kinds(args.kinds)
    if len(args.out) != len(kinds):
        raise SystemExit(f"tomlab steer: {len(kinds)} --kinds but {len(args.out)} --out files (one per kind, in order)")
    directions = {task: load_direction_sets(path) for task, path in direction_paths.items()}
    activations = {target: io.read_npy(activation_paths[target]) for _, target in pairs}
    items = _items(args.items)
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    scored, report = steer_pairs(
        loaded, items, directions, activations, pairs, kinds, _generation(args, items), site=args.site,
        alpha=args.alpha, conditions=args.conditions, completion_cache=args.completion_cache, modes=args.modes,
        batch_size=args.batch_size, shared_prefix=args.shared_prefix,
    )
    for kind, path in zip(kinds, args.out):
        io.write_parquet(path, scored[scored["direction"] == kind].reset_index(drop=True))
    print(json.dumps(report))


def cmd_steering_tables(args: argparse.Namespace) -> None:
    from tomlab.steering.tables import steering_accuracy

    baseline = io.read_table(args.baseline, BASELINE_COLUMNS, flag="--baseline")
    steered = pd.concat([io.read_table(path, STEERED_COLUMNS, flag="--steered") for path in args.steered],
                        ignore_index=True)
    table = steering_accuracy(baseline, steered, n_boot=args.n_boot, seed=args.seed)
    io.write_parquet(args.out, table)


def cmd_sweep(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import alpha_sweep

    sets = load_direction_sets(args.directions)
    items = _items(args.items)
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    scored, table, report = alpha_sweep(
        loaded, items, sets, _kinds(args.kinds), args.alphas, io.read_npy(args.activations), _generation(args, items),
        task=args.task, site=args.site, conditions=args.conditions, completion_cache=args.completion_cache,
        modes=args.modes, batch_size=args.batch_size, n_boot=args.n_boot, seed=args.seed,
        shared_prefix=args.shared_prefix,
    )
    io.write_parquet(args.out, scored)
    io.write_parquet(args.out_table, table)
    print(json.dumps(report))


def cmd_mechanism(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import mechanism

    sets = load_direction_sets(args.directions)
    items = _items(args.items)
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    letters, projections = mechanism(
        loaded, items, sets, _kinds(args.kinds), io.read_npy(args.activations), task=args.task, site=args.site,
        alpha=args.alpha, conditions=args.conditions, projection_kind=_kinds([args.projection_kind])[0],
        n_stories=args.n_stories, batch_size=args.batch_size, chat_template=_chat_template(args, items),
        shared_prefix=args.shared_prefix,
    )
    io.write_parquet(args.out_letters, letters)
    io.write_parquet(args.out_projections, projections)


def cmd_free_text(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import free_text

    sets = load_direction_sets(args.directions)
    items = _items(args.items)
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    texts = free_text(
        loaded, items, sets, _kinds(args.kinds), args.alphas, io.read_npy(args.activations), _generation(args, items),
        task=args.task, site=args.site, conditions=args.conditions, n_stories=args.n_stories,
        batch_size=args.batch_size, completion_cache=args.completion_cache, shared_prefix=args.shared_prefix,
    )
    io.write_parquet(args.out, texts)


def cmd_plot_steering(args: argparse.Namespace) -> None:
    from tomlab.figures.steering import (
        plot_alpha_sweep,
        plot_cross_task,
        plot_letter_probs,
        plot_token_projections,
    )

    sweep = io.read_table(args.sweep, SWEEP_COLUMNS, flag="--sweep")
    plot_alpha_sweep(sweep[sweep["task"] == sweep["task"].iloc[0]], args.sweep_stem)
    plot_cross_task(io.read_table(args.cross_wide, ("target",), flag="--cross-wide"),
                    io.read_table(args.cross_correlations, CORRELATION_COLUMNS, flag="--cross-correlations"),
                    args.cross_stem)
    plot_letter_probs(io.read_table(args.letters, LETTER_COLUMNS, flag="--letters"), args.letters_stem)
    plot_token_projections(io.read_table(args.projections, PROJECTION_COLUMNS, flag="--projections"),
                           args.projections_stem)


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers."""
    p = sub.add_parser("directions", help="steering directions and their top-K heads for one task and site")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--heads", required=True, help="the probe results (heads.parquet) of the same task and site")
    p.add_argument("--kinds", nargs="+", required=True)
    p.add_argument("--top-k", type=TOP_K, default=schema_default("steering.top_k"))
    p.add_argument("--seed", type=int, default=schema_default("steering.seed"))
    _add_probe_hparams(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_directions)

    p = sub.add_parser("steer", help="evaluate under each kind of intervention, for source:target task pairs")
    _add_answer_args(p)
    _add_shared_prefix(p)
    p.add_argument("--site", required=True)
    p.add_argument("--kinds", nargs="+", required=True)
    p.add_argument("--alpha", type=float, default=float(schema_default("steering.alpha")))
    p.add_argument("--pairs", nargs="+", required=True, help="SOURCE:TARGET task pairs")
    p.add_argument("--directions", nargs="+", required=True, help="TASK=directions.npz")
    p.add_argument("--activations", nargs="+", required=True, help="TASK=activations.npy (the probe split)")
    p.add_argument("--conditions", nargs="+", default=["true_belief", "false_belief"])
    p.add_argument("--out", nargs="+", required=True, help="one scored file per kind, in the order of --kinds")
    p.set_defaults(func=cmd_steer)

    p = sub.add_parser("steering-tables", help="accuracy with intervals, and the change from the baseline")
    p.add_argument("--baseline", required=True)
    p.add_argument("--steered", nargs="+", required=True)
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("evaluation.n_boot"))
    p.add_argument("--seed", type=int, default=schema_default("evaluation.seed"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_steering_tables)

    p = sub.add_parser("sweep", help="accuracy against intervention strength alpha")
    _add_answer_args(p)
    _add_shared_prefix(p)
    _add_direction_args(p)
    p.add_argument("--alphas", nargs="+", type=float, required=True)
    p.add_argument("--conditions", nargs="+", default=["true_belief", "false_belief"])
    p.add_argument("--out", required=True)
    p.add_argument("--out-table", required=True)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("mechanism", help="next-token letter probabilities and per-token projections")
    _add_model_args(p)
    _add_shared_prefix(p)
    p.add_argument("--items", required=True)
    _add_direction_args(p)
    p.add_argument("--alpha", type=float, default=float(schema_default("steering.alpha")))
    p.add_argument("--projection-kind", default=schema_default("steering.mechanism.projection_direction"))
    p.add_argument("--n-stories", type=int_range(1), default=schema_default("steering.mechanism.n_stories"))
    p.add_argument("--conditions", nargs="+", default=["true_belief", "false_belief"])
    p.add_argument("--batch-size", type=int_range(1, 100_000), default=schema_default("evaluation.batch_size"))
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction,
                   default=schema_default("evaluation.chat_template"))
    p.add_argument("--out-letters", required=True)
    p.add_argument("--out-projections", required=True)
    p.set_defaults(func=cmd_mechanism)

    p = sub.add_parser("free-text", help="open answers with and without the intervention")
    _add_model_args(p)
    _add_shared_prefix(p)
    p.add_argument("--items", required=True)
    _add_direction_args(p)
    p.add_argument("--alphas", nargs="+", type=float, default=[float(a) for a in schema_default("steering.free_text.alphas")])
    p.add_argument("--n-stories", type=int_range(1), default=schema_default("steering.free_text.n_stories"))
    p.add_argument("--conditions", nargs="+", default=["true_belief", "false_belief"])
    p.add_argument("--max-new-tokens", type=int_range(1, 1_000_000),
                   default=schema_default("steering.free_text.max_new_tokens"))
    p.add_argument("--batch-size", type=int_range(1, 100_000), default=schema_default("evaluation.batch_size"))
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction,
                   default=schema_default("evaluation.chat_template"))
    p.add_argument("--completion-cache", default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_free_text)

    p = sub.add_parser("plot-steering", help="Figures 5-8 (PNG and SVG)")
    for name in ("sweep", "cross-wide", "cross-correlations", "letters", "projections"):
        p.add_argument(f"--{name}", required=True)
    for name in ("sweep", "cross", "letters", "projections"):
        p.add_argument(f"--{name}-stem", required=True)
    p.set_defaults(func=cmd_plot_steering)
