"""Subcommands for the stress tests."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.bigtom.conditions import MAIN_TASK, TASKS
from tomlab.cli.common import (
    N_BOOT,
    TOP_K,
    _add_answer_args,
    _add_shared_prefix,
    _by_task,
    _generation,
    _items,
    _kinds,
    _load_split,
    _model_cfg,
    _task_activations,
    fraction,
    int_range,
    share,
)

#: The columns each stress table is read for (the producers' :data:`tomlab.stress.transfer.CORRECT_COLUMNS`,
#: :data:`~tomlab.stress.transfer.STAT_COLUMNS`, :data:`tomlab.stress.minds_probes.MINDS_COLUMNS`, ...).
ORIGIN_COLUMNS = ("origin_story", "row")
PAIRED_SAMPLE_COLUMNS = ("sample_id", "story_id", "condition", "protagonist", "prompt")
SHIFT_SAMPLE_COLUMNS = ("pair", "origin_story", "story_id", "prompt")
MINDS_SAMPLE_COLUMNS = ("story_id", "order", "role")
DECODABILITY_COLUMNS = ("condition", "k", "n_features", "draw", "sample", "correct", "n_classes")
TRANSFER_COLUMNS = ("shift", "method", "layer", "head", "sample", "correct", "n_classes")
TRANSFER_STAT_COLUMNS = ("shift", "n", "n_stories", "chance", "top_k", "top_acc", "top_acc_low", "original_top_acc")
MINDS_COLUMNS = ("group", "layer", "head", "sample", "correct")
MINDS_STAT_COLUMNS = ("group", "n_stories", "chance", "best_head", "best_acc", "best_low", "top_k")
BEHAVIOUR_COLUMNS = ("item_id", "direction", "condition", "set")
from tomlab.schema import default as schema_default
from tomlab.schema import vocabulary


def cmd_decodability(args: argparse.Namespace) -> None:
    from tomlab.stress.decodability import decodability_curve

    samples, acts = _task_activations(args.samples, args.activations, ("sample_id", args.target))
    is_val = _load_split(samples, args.split)
    correct = decodability_curve(acts, samples, is_val, target=args.target, ks=args.ks, draws=args.draws,
                                 seed=args.seed, max_iter=args.max_iter)
    io.write_parquet(args.out, correct)


def cmd_stress_shift(args: argparse.Namespace) -> None:
    from tomlab.bigtom.raw import read_raw, write_raw
    from tomlab.stress.perturb import perturb_frame
    from tomlab.stress.transfer import origin_table

    raw = read_raw(args.raw)
    shifted, skipped = perturb_frame(raw, args.kind, seed=args.seed)
    if shifted.empty:
        raise SystemExit(f"tomlab: the perturbation {args.kind!r} applies to none of the {len(raw)} stories of {args.raw}")
    print(f"{args.kind}: {len(shifted)} stories perturbed, {len(skipped)} skipped (it cannot apply to them)")
    write_raw(shifted, args.out_raw)
    io.write_parquet(args.out_origin, origin_table(len(raw), shifted["story_id"].tolist()))


def cmd_stress_samples(args: argparse.Namespace) -> None:
    from tomlab.stress.transfer import shifted_samples

    if args.origin:
        if not (args.original_samples and args.split):
            raise SystemExit("tomlab: --origin needs --original-samples and --split (to pair with the originals)")
        original = io.read_table(args.original_samples, PAIRED_SAMPLE_COLUMNS, flag="--original-samples")
        samples = shifted_samples(args.conditions, task=args.task, statements=args.statements, original=original,
                                  is_val=_load_split(original, args.split),
                                  origin=io.read_table(args.origin, ORIGIN_COLUMNS, flag="--origin"))
    else:
        samples = shifted_samples(args.conditions, task=args.task, statements=args.statements)
    io.write_parquet(args.out, samples)


def cmd_stress_transfer(args: argparse.Namespace) -> None:
    from tomlab.stress.transfer import POOLS, transfer_correct, transfer_stats

    samples, acts = _task_activations(args.samples, args.activations, ("sample_id", "story_id", "prompt", args.target))
    original = (acts, samples, _load_split(samples, args.split))
    shift_acts, shift_samples = _by_task(args.shift_activations, "--shift-activations"), _by_task(
        args.shift_samples, "--shift-samples")
    if set(shift_acts) != set(shift_samples):
        raise SystemExit("tomlab: --shift-activations and --shift-samples must name the same shifts")
    shifts = {}
    for name in shift_acts:
        s_samples, s_acts = _task_activations(shift_samples[name], shift_acts[name],
                                              (*SHIFT_SAMPLE_COLUMNS, args.target), flag=f"--shift-samples {name}=")
        shifts[name] = (s_acts, s_samples)
    if args.reverse and args.reverse not in shifts:
        raise SystemExit(f"tomlab: --reverse {args.reverse!r} is not among the shifts given")
    correct = transfer_correct(original, shifts, target=args.target, max_iter=args.max_iter, seed=args.seed,
                               reverse=args.reverse)
    io.write_parquet(args.out, correct)
    io.write_parquet(args.out_stats, transfer_stats(correct, top_k=args.top_k, n_boot=args.n_boot, seed=args.seed,
                                                         pools=POOLS))


def cmd_stress_examples(args: argparse.Namespace) -> None:
    from tomlab.bigtom.raw import read_raw
    from tomlab.stress.transfer import shift_examples

    raws, origins = _by_task(args.shifted, "--shifted"), _by_task(args.origin, "--origin")
    if set(raws) != set(origins):
        raise SystemExit("tomlab: --shifted and --origin must name the same perturbations")
    shifted = {k: (read_raw(raws[k]), io.read_table(origins[k], ORIGIN_COLUMNS, flag=f"--origin {k}=")) for k in raws}
    io.write_parquet(args.out, shift_examples(read_raw(args.raw), shifted))


def cmd_stress_minds(args: argparse.Namespace) -> None:
    from tomlab.stress.minds import (
        generate_minds,
        minds_items,
        minds_probe_samples,
        write_minds,
    )

    stories = generate_minds(args.n, args.seed)
    items = minds_items(stories.head(args.eval_stories), protocol=args.protocol, seed=args.eval_seed,
                        parser=args.parser)
    write_minds(stories, args.out_stories)
    io.write_parquet(args.out_samples, minds_probe_samples(stories))
    io.write_parquet(args.out_items, items)


def cmd_stress_minds_probe(args: argparse.Namespace) -> None:
    from tomlab.stress.minds_probes import minds_correct, minds_stats

    samples, acts = _task_activations(args.samples, args.activations, MINDS_SAMPLE_COLUMNS)
    correct = minds_correct(acts, samples, val_fraction=args.val_fraction, seed=args.seed, max_iter=args.max_iter)
    io.write_parquet(args.out, correct)
    transfer = io.read_table(args.transfer, TRANSFER_COLUMNS, flag="--transfer")
    stats = minds_stats(correct, transfer, top_k=args.top_k, n_boot=args.n_boot, seed=args.seed)
    io.write_parquet(args.out_stats, stats)


def cmd_stress_items(args: argparse.Namespace) -> None:
    from tomlab.bigtom.conditions import split_stories
    from tomlab.bigtom.raw import read_raw
    from tomlab.stress.behaviour import stress_items

    folders, origins = _by_task(args.set, "--set"), _by_task(args.origin, "--origin")
    if set(folders) != set(origins):
        raise SystemExit("tomlab: --set and --origin must name the same item sets")
    eval_ids, _ = split_stories(len(read_raw(args.raw)), args.eval_fraction)
    items = stress_items(args.conditions, eval_ids[: args.max_stories],
                         {k: (folders[k], io.read_table(origins[k], ORIGIN_COLUMNS, flag=f"--origin {k}="))
                          for k in folders},
                         minds=_items(args.minds_items, "--minds-items") if args.minds_items else None,
                         protocol=args.protocol, seed=args.seed, parser=args.parser)
    io.write_parquet(args.out, items)


def cmd_stress_behaviour(args: argparse.Namespace) -> None:
    from tomlab.backends.build import generator, load_local
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import evaluate_many
    from tomlab.stress.behaviour import behaviour_table

    items = _items(args.items)
    loaded = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    config = _generation(args, items)
    kind = _kinds([args.kind])[0]
    sets = load_direction_sets(args.directions)
    if kind not in sets:
        raise SystemExit(f"tomlab: {args.directions} has no direction kind {kind!r} (it has {sorted(sets)})")
    entry = sets[kind]
    intervention = entry.intervention(args.site, entry.spread(io.read_npy(args.activations)), args.alpha)
    lm = generator(loaded, args.batch_size)
    # the plain model is the intervention at strength zero (the plain cache namespace)
    (plain, steered), counters = evaluate_many(
        loaded, items, lm, config, [intervention.with_alpha(0.0), intervention], shared_prefix=args.shared_prefix,
        cache_dir=args.completion_cache, modes=args.modes, batch_size=args.batch_size)
    scored = pd.concat([plain.drop(columns=["alpha", "site"]).assign(direction="none"),
                        steered.assign(direction=kind)], ignore_index=True)
    io.write_parquet(args.out, scored)
    io.write_parquet(args.out_table, behaviour_table(scored, n_boot=args.n_boot, seed=args.seed))
    print(json.dumps(counters))


def cmd_stress_verdicts(args: argparse.Namespace) -> None:
    from tomlab.stress.verdicts import (
        decodability_verdict,
        minds_verdict,
        steering_verdict,
        transfer_verdicts,
        verdict_table,
    )

    decodability = io.read_table(args.decodability, DECODABILITY_COLUMNS, flag="--decodability")
    rows = [decodability_verdict(decodability, few=args.few, n_boot=args.n_boot)]
    if args.transfer_stats:
        rows += transfer_verdicts(io.read_table(args.transfer_stats, TRANSFER_STAT_COLUMNS, flag="--transfer-stats"))
    behaviour = io.read_table(args.behaviour, BEHAVIOUR_COLUMNS, flag="--behaviour") if args.behaviour else None
    if args.minds_stats:
        rows.append(minds_verdict(io.read_table(args.minds_stats, MINDS_STAT_COLUMNS, flag="--minds-stats"), behaviour))
    if behaviour is not None:
        row = steering_verdict(behaviour, n_boot=args.n_boot)
        rows += [row] if row is not None else []
    io.write_parquet(args.out, verdict_table(rows))


def cmd_plot_stress(args: argparse.Namespace) -> None:
    from tomlab.figures.stress import (
        plot_decodability,
        plot_head_maps,
        plot_minds,
        plot_overlap,
        plot_transfer,
    )
    from tomlab.stress.decodability import chance_level, curve_summary
    from tomlab.stress.minds_probes import head_map
    from tomlab.stress.transfer import overlap_matrix

    correct = io.read_table(args.decodability, DECODABILITY_COLUMNS, flag="--decodability")
    plot_decodability(curve_summary(correct), args.out_decodability, chance=chance_level(correct))
    transfer = io.read_table(args.transfer, TRANSFER_COLUMNS, flag="--transfer")
    stats = io.read_table(args.transfer_stats, TRANSFER_STAT_COLUMNS, flag="--transfer-stats")
    plot_transfer(stats, args.out_transfer, chance=chance_level(transfer))
    plot_overlap(overlap_matrix(transfer, top_k=args.top_k), args.out_overlap, top_k=args.top_k)
    if args.out_maps:
        plot_head_maps(transfer, args.out_maps, chance=chance_level(transfer))
    minds = io.read_table(args.minds, MINDS_COLUMNS, flag="--minds")
    plot_minds({g: head_map(minds, g) for g in ("first_order", "second_order")}, args.out_minds)


def _add_probe_stat_args(p: argparse.ArgumentParser) -> None:
    """The options of a command that fits per-head probes and writes them with their statistics."""
    p.add_argument("--top-k", type=TOP_K, default=schema_default("stress.top_k"))
    p.add_argument("--seed", type=int, default=schema_default("stress.seed"))
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("stress.n_boot"))
    p.add_argument("--max-iter", type=int_range(1), default=schema_default("probing.max_iter"))
    p.add_argument("--out", required=True)
    p.add_argument("--out-stats", required=True)


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers."""
    p = sub.add_parser("decodability", help="probe accuracy against features pooled (best head, random heads, layers)")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--target", default=schema_default("stress.target"))
    p.add_argument("--ks", type=TOP_K, nargs="+", default=schema_default("stress.decodability.ks"))
    p.add_argument("--draws", type=int_range(1, 100_000), default=schema_default("stress.decodability.draws"))
    p.add_argument("--seed", type=int, default=schema_default("stress.seed"))
    p.add_argument("--max-iter", type=int_range(1), default=schema_default("probing.max_iter"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_decodability)

    p = sub.add_parser("stress-shift", help="a perturbation of every story of a raw BigToM file it applies to")
    p.add_argument("--raw", required=True)
    p.add_argument("--kind", required=True, help="one of tomlab.stress.perturb.PERTURBATIONS")
    p.add_argument("--seed", type=int, default=schema_default("stress.seed"))
    p.add_argument("--out-raw", required=True)
    p.add_argument("--out-origin", required=True, help="where each original story went (-1: skipped)")
    p.set_defaults(func=cmd_stress_shift)

    p = sub.add_parser("stress-samples", help="probing samples of a shifted story set, paired with the originals")
    p.add_argument("--conditions", required=True)
    p.add_argument("--task", default=MAIN_TASK, choices=TASKS)
    p.add_argument("--statements", choices=vocabulary("statement_style"), default=schema_default("probing.statements"))
    p.add_argument("--origin", help="the perturbation's origin table (omit for other stories)")
    p.add_argument("--original-samples")
    p.add_argument("--split")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stress_samples)

    p = sub.add_parser("stress-transfer", help="probes trained on the originals, tested on every shift")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--shift-activations", nargs="+", required=True, metavar="SHIFT=PATH")
    p.add_argument("--shift-samples", nargs="+", required=True, metavar="SHIFT=PATH")
    p.add_argument("--reverse", help="also train on this (unpaired) shift and test on the originals")
    p.add_argument("--target", default=schema_default("stress.target"))
    _add_probe_stat_args(p)
    p.set_defaults(func=cmd_stress_transfer)

    p = sub.add_parser("stress-examples", help="one before/after example per perturbation")
    p.add_argument("--raw", required=True)
    p.add_argument("--shifted", nargs="+", required=True, metavar="KIND=PATH")
    p.add_argument("--origin", nargs="+", required=True, metavar="KIND=PATH")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stress_examples)

    p = sub.add_parser("stress-minds", help="stories with three minds: the stories, probe samples and items")
    p.add_argument("--n", type=int_range(1, 1_000_000), default=schema_default("stress.minds.n"))
    p.add_argument("--seed", type=int, default=schema_default("stress.seed"))
    p.add_argument("--eval-stories", type=int_range(1), default=schema_default("stress.minds.eval_stories"),
                   help="the first N stories give the evaluation items")
    p.add_argument("--protocol", default=schema_default("evaluation.protocol"), choices=vocabulary("eval_protocol"))
    p.add_argument("--parser", default=schema_default("evaluation.parser"), choices=vocabulary("answer_parser"))
    p.add_argument("--eval-seed", type=int, default=schema_default("evaluation.seed"), help="option order")
    p.add_argument("--out-stories", required=True)
    p.add_argument("--out-samples", required=True)
    p.add_argument("--out-items", required=True)
    p.set_defaults(func=cmd_stress_minds)

    p = sub.add_parser("stress-minds-probe", help="per-head probes on the several-minds stories")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--transfer", required=True, help="stress-transfer's per-sample results (the belief heads)")
    p.add_argument("--val-fraction", type=fraction, default=schema_default("split.val_fraction"))
    _add_probe_stat_args(p)
    p.set_defaults(func=cmd_stress_minds_probe)

    p = sub.add_parser("stress-items", help="evaluation items of the original, perturbed and several-minds stories")
    p.add_argument("--raw", required=True, help="the original raw stories (for the evaluation split)")
    p.add_argument("--conditions", required=True, help="the original stories' condition folder")
    p.add_argument("--eval-fraction", type=share, default=schema_default("split.eval_fraction"))
    p.add_argument("--max-stories", type=int_range(1), default=schema_default("stress.behaviour.max_stories"))
    p.add_argument("--set", nargs="*", default=[], metavar="NAME=CONDITIONS", help="perturbed condition folders")
    p.add_argument("--origin", nargs="*", default=[], metavar="NAME=ORIGIN", help="their origin tables")
    p.add_argument("--minds-items")
    p.add_argument("--protocol", default=schema_default("evaluation.protocol"), choices=vocabulary("eval_protocol"))
    p.add_argument("--parser", default=schema_default("evaluation.parser"), choices=vocabulary("answer_parser"))
    p.add_argument("--seed", type=int, default=schema_default("evaluation.seed"), help="option order")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stress_items)

    p = sub.add_parser("stress-behaviour", help="answer the stress items plainly and steered along one direction")
    _add_answer_args(p)
    _add_shared_prefix(p)
    p.add_argument("--directions", required=True, help="the main task's directions (.npz)")
    p.add_argument("--activations", required=True, help="the main task's activations at --site (sets sigma)")
    p.add_argument("--site", required=True)
    p.add_argument("--kind", default=schema_default("stress.behaviour.direction"))
    p.add_argument("--alpha", type=float, default=float(schema_default("steering.alpha")))
    p.add_argument("--out", required=True)
    p.add_argument("--out-table", required=True)
    p.set_defaults(func=cmd_stress_behaviour)

    p = sub.add_parser("stress-verdicts", help="one verdict per doubt, with its statistic and 95%% interval")
    p.add_argument("--decodability", required=True)
    p.add_argument("--few", type=TOP_K, default=schema_default("stress.decodability.few"))
    p.add_argument("--transfer-stats")
    p.add_argument("--minds-stats")
    p.add_argument("--behaviour", help="the scored stress items (stress-behaviour --out)")
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("stress.n_boot"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_stress_verdicts)

    p = sub.add_parser("plot-stress", help="the stress tests' figures")
    p.add_argument("--decodability", required=True)
    p.add_argument("--transfer", required=True)
    p.add_argument("--transfer-stats", required=True)
    p.add_argument("--top-k", type=TOP_K, default=schema_default("stress.top_k"))
    p.add_argument("--out-decodability", required=True, help="file stem (PNG and SVG)")
    p.add_argument("--out-transfer", required=True, help="file stem (PNG and SVG)")
    p.add_argument("--out-overlap", required=True, help="file stem (PNG and SVG)")
    p.add_argument("--out-maps", help="file stem (PNG and SVG) of the per-head maps under each shift")
    p.add_argument("--minds", required=True)
    p.add_argument("--out-minds", required=True, help="file stem (PNG and SVG)")
    p.set_defaults(func=cmd_plot_stress)
