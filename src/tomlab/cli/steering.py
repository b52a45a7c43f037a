"""Subcommands for steering."""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import pandas as pd

from tomlab import io
from tomlab.cli.common import (
    _add_answer_args,
    _add_direction_args,
    _add_model_args,
    _by_task,
    _eval_subset,
    _generation,
    _kinds,
    _load_split,
    _model_cfg,
    _sigma_for,
    _task_activations,
)


def cmd_directions(args: argparse.Namespace) -> None:
    from tomlab.steering.directions import build_direction_sets, save_direction_sets

    samples, acts = _task_activations(args.samples, args.activations)
    is_val = _load_split(samples, args.split)
    heads = pd.read_parquet(args.heads)
    sets = build_direction_sets(
        np.asarray(acts, dtype=np.float32), samples, heads, _kinds(args.kinds), k=args.top_k, is_val=is_val, seed=args.seed,
        C_binary=args.C_binary, C_joint=args.C_joint, max_iter=args.max_iter,
    )
    save_direction_sets(args.out, sets)
    print(json.dumps({kind: entry["heads"].tolist() for kind, entry in sets.items()}))


def cmd_steer(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.backends.lm import TransformersLM
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import evaluate_steered

    direction_paths = _by_task(args.directions, "--directions")
    activations = _by_task(args.activations, "--activations")
    pairs = []
    for pair in args.pairs:
        source, sep, target = pair.partition(":")
        if not sep or source not in direction_paths or target not in activations:
            raise SystemExit(f"tomlab: --pairs entry {pair!r} needs --directions for {source!r} and "
                             f"--activations for {target!r}")
        pairs.append((source, target))
    kind = _kinds([args.kind])[0]
    directions = {task: load_direction_sets(path) for task, path in direction_paths.items()}
    for source, _ in pairs:
        if kind not in directions[source]:
            raise SystemExit(f"tomlab: {direction_paths[source]} has no direction kind {kind!r}")
    items = pd.read_parquet(args.items)
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    generator = TransformersLM(loaded, batch_size=args.batch_size)
    frames, counters = [], {"cache_hits": 0, "cache_misses": 0}
    for source, target in pairs:
        entry = directions[source][kind]
        sigma = _sigma_for(entry["theta"], activations[target])
        sub = _eval_subset(items, target, args.conditions, "evaluation")
        scored, count = evaluate_steered(
            loaded, sub, generator, _generation(args), heads=entry["heads"], directions=entry["theta"], sigma=sigma,
            alpha=args.alpha, site=args.site, cache_dir=args.completion_cache, modes=args.modes,
            batch_size=args.batch_size,
        )
        frames.append(scored.assign(source_task=source, direction=kind, top_k=len(entry["heads"])))
        for key in counters:
            counters[key] += count.get(key, 0)
    io.write_parquet(args.out, pd.concat(frames, ignore_index=True))
    print(json.dumps({"usage": generator.usage.as_dict(), **counters}))


def cmd_steering_tables(args: argparse.Namespace) -> None:
    from tomlab.steering.tables import steering_accuracy

    baseline = pd.read_parquet(args.baseline)
    steered = pd.concat([pd.read_parquet(path) for path in args.steered], ignore_index=True)
    table = steering_accuracy(baseline, steered, n_boot=args.n_boot, seed=args.seed)
    io.write_parquet(args.out, table)


def cmd_sweep(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.backends.lm import TransformersLM
    from tomlab.bigtom.evaluation import mode_tables
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import evaluate_steered

    sets = load_direction_sets(args.directions)
    items = _eval_subset(pd.read_parquet(args.items), args.task, args.conditions, "sweep")
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    generator = TransformersLM(loaded, batch_size=args.batch_size)
    frames = []
    for kind in _kinds(args.kinds):
        if kind not in sets:
            raise SystemExit(f"tomlab: {args.directions} has no direction kind {kind!r} (it has {sorted(sets)})")
        sigma = _sigma_for(sets[kind]["theta"], args.activations)
        for alpha in args.alphas:
            scored, _ = evaluate_steered(
                loaded, items, generator, _generation(args), heads=sets[kind]["heads"],
                directions=sets[kind]["theta"], sigma=sigma, alpha=alpha, site=args.site,
                cache_dir=args.completion_cache, modes=args.modes, batch_size=args.batch_size,
            )
            frames.append(scored.assign(direction=kind))
    scored = pd.concat(frames, ignore_index=True)
    table = mode_tables(scored, by=("direction", "alpha", "task", "condition"), n_boot=args.n_boot, seed=args.seed)
    io.write_parquet(args.out, scored)
    io.write_parquet(args.out_table, table)
    print(json.dumps({"usage": generator.usage.as_dict()}))


def cmd_mechanism(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.backends.hooks import HeadIntervention
    from tomlab.backends.likelihood import letter_probs
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import token_projections

    sets = load_direction_sets(args.directions)
    items = _eval_subset(pd.read_parquet(args.items), args.task, args.conditions, "mechanism")
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    plain = letter_probs(loaded, items, batch_size=args.batch_size, chat_template=args.chat_template)
    letters, projections = [], []
    for kind in _kinds(args.kinds):
        if kind not in sets:
            raise SystemExit(f"tomlab: {args.directions} has no direction kind {kind!r} (it has {sorted(sets)})")
        theta, heads = sets[kind]["theta"], sets[kind]["heads"]
        sigma = _sigma_for(theta, args.activations)
        pairs = [tuple(int(x) for x in h) for h in heads]
        with HeadIntervention(loaded, pairs, theta, sigma, args.alpha, site=args.site) as hook:
            steered = letter_probs(loaded, items, batch_size=args.batch_size, chat_template=args.chat_template,
                                   intervention=hook)
        letters.append(plain[["item_id", "story_id", "task", "condition", "answer_letter"]].assign(
            direction=kind, alpha=args.alpha, site=args.site,
            p_correct_plain=plain["p_correct"].to_numpy(), p_wrong_plain=plain["p_wrong"].to_numpy(),
            p_correct_steered=steered["p_correct"].to_numpy(), p_wrong_steered=steered["p_wrong"].to_numpy(),
            delta_correct=steered["p_correct"].to_numpy() - plain["p_correct"].to_numpy(),
            delta_wrong=steered["p_wrong"].to_numpy() - plain["p_wrong"].to_numpy(),
        ))
        if kind == _kinds([args.projection_kind])[0]:
            for story_id in sorted(items["story_id"].unique())[: args.n_stories]:
                for row in items[items["story_id"] == story_id].itertuples():
                    text = f"Story: {row.story}\nQuestion: {row.question}"
                    proj = token_projections(loaded, text, pairs, theta, sigma, site=args.site)
                    projections.append(proj.assign(story_id=int(story_id), condition=row.condition, direction=kind))
    if not projections:
        raise SystemExit(f"tomlab: --projection-kind {args.projection_kind!r} is not among --kinds {args.kinds}")
    io.write_parquet(args.out_letters, pd.concat(letters, ignore_index=True))
    io.write_parquet(args.out_projections, pd.concat(projections, ignore_index=True))


def cmd_free_text(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.backends.hooks import HeadIntervention
    from tomlab.backends.lm import GenerationConfig, TransformersLM
    from tomlab.bigtom.evaluation import free_text_prompt
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.intervention import intervention_fingerprint
    from tomlab.steering.run import steered_generator

    sets = load_direction_sets(args.directions)
    items = _eval_subset(pd.read_parquet(args.items), args.task, args.conditions, "free-text")
    keep = sorted(items["story_id"].unique())[: args.n_stories]
    items = items[items["story_id"].isin(keep)].reset_index(drop=True)
    prompts = [free_text_prompt(s, q) for s, q in zip(items["story"], items["question"])]
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    generator = TransformersLM(loaded, batch_size=args.batch_size)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, chat_template=args.chat_template)
    rows = []
    settings = [("none", 0.0)] + [(kind, alpha) for kind in _kinds(args.kinds) for alpha in args.alphas]
    for kind, alpha in settings:
        if kind == "none":
            heads, theta, sigma = np.zeros((0, 2), dtype=np.int64), None, None
        else:
            if kind not in sets:
                raise SystemExit(f"tomlab: {args.directions} has no direction kind {kind!r} (it has {sorted(sets)})")
            heads, theta = sets[kind]["heads"], sets[kind]["theta"]
            sigma = _sigma_for(theta, args.activations)
        if theta is None:
            lm = steered_generator(generator, args.completion_cache, "")
            completions = lm.generate(prompts, config)
        else:
            pairs = [tuple(int(x) for x in h) for h in heads]
            lm = steered_generator(generator, args.completion_cache,
                                   intervention_fingerprint(pairs, theta, sigma, alpha, args.site))
            with HeadIntervention(loaded, pairs, theta, sigma, alpha, site=args.site):
                completions = lm.generate(prompts, config)
        for row, prompt, completion in zip(items.itertuples(), prompts, completions):
            rows.append({"story_id": int(row.story_id), "task": row.task, "condition": row.condition,
                         "direction": kind, "alpha": float(alpha), "site": args.site, "prompt": prompt,
                         "completion": completion.text, "correct": row.correct, "wrong": row.wrong})
    io.write_parquet(args.out, pd.DataFrame(rows))


def cmd_plot_steering(args: argparse.Namespace) -> None:
    from tomlab.figures.steering import (
        plot_alpha_sweep,
        plot_cross_task,
        plot_letter_probs,
        plot_token_projections,
    )

    sweep = pd.read_parquet(args.sweep)
    plot_alpha_sweep(sweep[sweep["task"] == sweep["task"].iloc[0]], args.sweep_stem)
    plot_cross_task(pd.read_parquet(args.cross_wide), pd.read_parquet(args.cross_correlations), args.cross_stem)
    plot_letter_probs(pd.read_parquet(args.letters), args.letters_stem)
    plot_token_projections(pd.read_parquet(args.projections), args.projections_stem)


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers."""
    p = sub.add_parser("directions", help="steering directions and their top-K heads for one task and site")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--heads", required=True, help="the probe results (heads.parquet) of the same task and site")
    p.add_argument("--kinds", nargs="+", required=True)
    p.add_argument("--top-k", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--C-binary", type=float, default=10.0)
    p.add_argument("--C-joint", type=float, default=1.0)
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_directions)

    p = sub.add_parser("steer", help="evaluate under one kind of intervention, for source:target task pairs")
    _add_answer_args(p)
    p.add_argument("--site", required=True)
    p.add_argument("--kind", required=True)
    p.add_argument("--alpha", type=float, default=20.0)
    p.add_argument("--pairs", nargs="+", required=True, help="SOURCE:TARGET task pairs")
    p.add_argument("--directions", nargs="+", required=True, help="TASK=directions.npz")
    p.add_argument("--activations", nargs="+", required=True, help="TASK=activations.npy (the probe split)")
    p.add_argument("--conditions", nargs="+", default=["true_belief", "false_belief"])
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_steer)

    p = sub.add_parser("steering-tables", help="accuracy with intervals, and the change from the baseline")
    p.add_argument("--baseline", required=True)
    p.add_argument("--steered", nargs="+", required=True)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_steering_tables)

    p = sub.add_parser("sweep", help="accuracy against intervention strength alpha")
    _add_answer_args(p)
    _add_direction_args(p)
    p.add_argument("--alphas", nargs="+", type=float, required=True)
    p.add_argument("--conditions", nargs="+", default=["true_belief", "false_belief"])
    p.add_argument("--out", required=True)
    p.add_argument("--out-table", required=True)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("mechanism", help="next-token letter probabilities and per-token projections")
    _add_model_args(p)
    p.add_argument("--items", required=True)
    _add_direction_args(p)
    p.add_argument("--alpha", type=float, default=20.0)
    p.add_argument("--projection-kind", default="+tpfo")
    p.add_argument("--n-stories", type=int, default=2)
    p.add_argument("--conditions", nargs="+", default=["true_belief", "false_belief"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--out-letters", required=True)
    p.add_argument("--out-projections", required=True)
    p.set_defaults(func=cmd_mechanism)

    p = sub.add_parser("free-text", help="open answers with and without the intervention")
    _add_model_args(p)
    p.add_argument("--items", required=True)
    _add_direction_args(p)
    p.add_argument("--alphas", nargs="+", type=float, default=[20.0])
    p.add_argument("--n-stories", type=int, default=3)
    p.add_argument("--conditions", nargs="+", default=["true_belief", "false_belief"])
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--completion-cache", default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_free_text)

    p = sub.add_parser("plot-steering", help="Figures 5-8 (PNG and SVG)")
    for name in ("sweep", "cross-wide", "cross-correlations", "letters", "projections"):
        p.add_argument(f"--{name}", required=True)
    for name in ("sweep", "cross", "letters", "projections"):
        p.add_argument(f"--{name}-stem", required=True)
    p.set_defaults(func=cmd_plot_steering)
