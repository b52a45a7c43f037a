"""Subcommands for probing: samples, split, model, extraction, probes, baseline, figures, benchmarks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from tomlab import io
from tomlab.bigtom.conditions import MAIN_TASK, TASKS
from tomlab.cli.common import (
    HEAD_COLUMNS,
    TARGET_COLUMNS,
    TOP_K,
    _add_model_args,
    _add_probe_hparams,
    _by_task,
    _load_split,
    _model_cfg,
    _task_activations,
    fraction,
    int_range,
    share,
)
from tomlab.schema import default as schema_default
from tomlab.schema import vocabulary


def cmd_probe_samples(args: argparse.Namespace) -> None:
    from tomlab.probing.samples import build_probe_samples

    samples = build_probe_samples(args.conditions, task=args.task, eval_fraction=args.eval_fraction,
                                  max_stories=args.max_stories, statements=args.statements)
    io.write_parquet(args.out, samples)


def cmd_split(args: argparse.Namespace) -> None:
    from tomlab.probing.probes import split_train_val

    samples = io.read_table(args.samples, ("sample_id", "story_id"), flag="--samples")
    is_val = split_train_val(samples, val_fraction=args.val_fraction, mode=args.mode, seed=args.seed)
    io.write_parquet(
        args.out, pd.DataFrame({"sample_id": samples["sample_id"], "story_id": samples["story_id"], "is_val": is_val})
    )


def cmd_prepare_model(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local

    from tomlab.backends.models import cache_root
    from tomlab.backends.prepared import find_prepared, folder_bytes, needs_preparing, write_prepared

    spec = _model_cfg(args)
    lm = load_local(spec, cache_dir=args.cache_dir)
    info = lm.describe()
    if needs_preparing(str(spec["name"])):  # once, so every later job of this model loads it fast
        root = cache_root(args.cache_dir if args.cache_dir is not None else spec.get("cache_dir"))
        dtype = info["dtype"]
        folder = find_prepared(root, spec, dtype) or write_prepared(lm, root, spec, dtype)
        info.update(prepared=str(folder), prepared_bytes=folder_bytes(folder))
    io.write_json(args.out, info)


def cmd_extract(args: argparse.Namespace) -> None:
    from tomlab.backends.activations import extract_activations, prompt_lengths
    from tomlab.backends.build import load_local

    samples = io.read_table(args.samples, ("prompt",), flag="--samples")
    lm = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    prompts = samples["prompt"].tolist()
    lengths = prompt_lengths(lm, prompts)
    acts = extract_activations(lm, prompts, sites=args.sites, batch_size=args.batch_size, lengths=lengths,
                               dtype=args.dtype)
    meta = samples.assign(n_tokens=lengths, model=lm.name)
    for site, array in acts.items():
        io.write_npy(Path(args.out_dir) / f"{site}.npy", array)
    io.write_parquet(Path(args.out_dir) / "samples.parquet", meta)


def cmd_probe(args: argparse.Namespace) -> None:
    from tomlab.probing.probes import probe_heads, probe_layers, top_heads

    samples, acts = _task_activations(args.samples, args.activations, ("sample_id", *TARGET_COLUMNS))
    is_val = _load_split(samples, args.split)
    kw: dict[str, Any] = {"C_binary": args.C_binary, "C_joint": args.C_joint, "max_iter": args.max_iter,
                          "seed": args.seed}
    heads = probe_heads(acts, samples, is_val, **kw)
    layers = probe_layers(acts, samples, is_val, **kw)
    top = pd.concat([top_heads(heads, t, k=args.top_k) for t in heads["target"].unique()], ignore_index=True)
    io.write_parquet(args.out_heads, heads)
    io.write_parquet(args.out_layers, layers)
    with io.atomic_path(args.out_top) as tmp:
        top.to_csv(tmp, index=False)


def cmd_lexical(args: argparse.Namespace) -> None:
    from tomlab.probing.probes import lexical_baseline

    samples = io.read_table(args.samples, ("sample_id", "prompt", *TARGET_COLUMNS), flag="--samples")
    is_val = _load_split(samples, args.split)
    io.write_parquet(
        args.out,
        lexical_baseline(samples, is_val, C_binary=args.C_binary, C_joint=args.C_joint, max_iter=args.max_iter),
    )


def cmd_plot_probing(args: argparse.Namespace) -> None:
    from tomlab.figures.probing import plot_probe_accuracy, plot_probe_selectivity

    heads = io.read_table(args.heads, (*HEAD_COLUMNS, "selectivity"), flag="--heads")
    plot_probe_accuracy(heads, args.accuracy, site=args.site)
    plot_probe_selectivity(heads, args.selectivity, site=args.site)


def cmd_cross_task(args: argparse.Namespace) -> None:
    from tomlab.probing.probes import cross_task_correlation

    heads = {task: io.read_table(path, HEAD_COLUMNS, flag=f"--heads {task}=") for task, path in _by_task(args.heads, "--heads").items()}
    wide, corr = cross_task_correlation(heads, top_k=args.top_k)
    io.write_parquet(args.out_wide, wide)
    io.write_parquet(args.out_correlations, corr)


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers."""
    p = sub.add_parser("probe-samples", help="the four probing samples of each story of the probe split")
    p.add_argument("--conditions", required=True)
    p.add_argument("--task", default=MAIN_TASK, choices=TASKS)
    p.add_argument("--eval-fraction", type=share, default=schema_default("split.eval_fraction"))
    p.add_argument("--max-stories", type=int_range(1), default=None)
    p.add_argument("--statements", choices=vocabulary("statement_style"), default=schema_default("probing.statements"),
                   help="original: the original's rewritten statements; verbatim: the answers' own words")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_probe_samples)

    p = sub.add_parser("split", help="train/validation split of the probe samples")
    p.add_argument("--samples", required=True)
    p.add_argument("--val-fraction", type=fraction, default=schema_default("split.val_fraction"))
    p.add_argument("--mode", choices=vocabulary("split_mode"), default=schema_default("split.mode"))
    p.add_argument("--seed", type=int, default=schema_default("split.seed"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("prepare-model", help="load (and convert once) the model; write its description")
    _add_model_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_prepare_model)

    p = sub.add_parser("extract", help="per-head activations at the last token")
    _add_model_args(p)
    p.add_argument("--samples", required=True)
    p.add_argument("--dtype", default=schema_default("activations.dtype"), choices=("float32", "float16"),
                   help="stored precision of the activations (float32 as the released code)")
    p.add_argument("--sites", nargs="+", default=schema_default("activations.sites"), choices=vocabulary("site"))
    p.add_argument("--batch-size", type=int_range(1, 100_000), default=schema_default("activations.batch_size"))
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("probe", help="probes per head and per layer, with the shuffled-label control")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    _add_probe_hparams(p)
    p.add_argument("--seed", type=int, default=schema_default("probing.seed"))
    p.add_argument("--top-k", type=TOP_K, default=schema_default("probing.top_k"))
    p.add_argument("--out-heads", required=True)
    p.add_argument("--out-layers", required=True)
    p.add_argument("--out-top", required=True)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("lexical", help="bag-of-words baseline on the prompt text alone")
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    _add_probe_hparams(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_lexical)

    p = sub.add_parser("plot-probing", help="accuracy and selectivity heatmaps (PNG and SVG)")
    p.add_argument("--heads", required=True)
    p.add_argument("--site", default="")
    p.add_argument("--accuracy", required=True, help="output stem (without extension)")
    p.add_argument("--selectivity", required=True, help="output stem (without extension)")
    p.set_defaults(func=cmd_plot_probing)

    p = sub.add_parser("cross-task", help="correlation of per-head probe accuracies across tasks")
    p.add_argument("--heads", nargs="+", required=True, help="TASK=heads.parquet")
    p.add_argument("--top-k", type=TOP_K, default=schema_default("steering.top_k"))
    p.add_argument("--out-wide", required=True)
    p.add_argument("--out-correlations", required=True)
    p.set_defaults(func=cmd_cross_task)
