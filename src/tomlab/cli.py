"""The ``tomlab`` command line: a thin layer that Snakemake rules call.

Every subcommand reads its inputs, calls the library, and writes its outputs atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomlab import io


def _model_cfg(args: argparse.Namespace) -> dict[str, Any]:
    cfg = json.loads(args.model_json) if args.model_json else {}
    if args.model:
        cfg["name"] = args.model
    if "name" not in cfg:
        raise SystemExit("tomlab: give the model with --model NAME or --model-json '{\"name\": ...}'")
    if not cfg.get("allow_download", False):
        os.environ["HF_HUB_OFFLINE"] = "1"  # this process only: nothing may reach a model hub
    return cfg


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name: embedded:smollm2-135m-instruct, random:<family>, a hub id or a folder")
    p.add_argument("--model-json", help="the config's model section as JSON (name, dtype, device, ...)")
    p.add_argument("--cache-dir", help="where converted embedded models are kept (default ~/.cache/tomlab)")


def _load_split(samples: pd.DataFrame, split_path: str) -> np.ndarray:
    split = pd.read_parquet(split_path)
    merged = samples[["sample_id"]].merge(split[["sample_id", "is_val"]], on="sample_id", how="left")
    if merged["is_val"].isna().any():
        raise SystemExit(f"tomlab: {split_path} does not cover every sample of the sample table")
    return merged["is_val"].to_numpy(dtype=bool)


# --- data -------------------------------------------------------------------------------------


def cmd_generate_stories(args: argparse.Namespace) -> None:
    from tomlab.stories import write_generated

    write_generated(args.out, n=args.n, seed=args.seed)


def cmd_import_bigtom(args: argparse.Namespace) -> None:
    from tomlab.data import read_raw

    read_raw(args.csv)  # validates; raises naming file and line
    with io.atomic_path(args.out) as tmp:
        shutil.copyfile(args.csv, tmp)


def cmd_bigtom_conditions(args: argparse.Namespace) -> None:
    from tomlab.data import conditions_from_csv

    paths = conditions_from_csv(args.csv, args.out)
    print(f"wrote {len(paths)} condition files under {args.out}")


def cmd_probe_samples(args: argparse.Namespace) -> None:
    from tomlab.activations import build_probe_samples

    samples = build_probe_samples(args.conditions, task=args.task, eval_fraction=args.eval_fraction,
                                  max_stories=args.max_stories)
    io.write_parquet(args.out, samples)


def cmd_split(args: argparse.Namespace) -> None:
    from tomlab.probing import split_train_val

    samples = pd.read_parquet(args.samples)
    is_val = split_train_val(samples, val_fraction=args.val_fraction, mode=args.mode, seed=args.seed)
    io.write_parquet(
        args.out, pd.DataFrame({"sample_id": samples["sample_id"], "story_id": samples["story_id"], "is_val": is_val})
    )


# --- model and activations --------------------------------------------------------------------


def cmd_prepare_model(args: argparse.Namespace) -> None:
    from tomlab.models import load_model_from_config

    lm = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
    io.write_json(args.out, lm.describe())


def cmd_extract(args: argparse.Namespace) -> None:
    from tomlab.activations import extract_activations, prompt_lengths
    from tomlab.models import load_model_from_config

    samples = pd.read_parquet(args.samples)
    lm = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
    prompts = samples["prompt"].tolist()
    lengths = prompt_lengths(lm, prompts)
    acts = extract_activations(lm, prompts, sites=args.sites, batch_size=args.batch_size, lengths=lengths)
    meta = samples.assign(n_tokens=lengths, model=lm.name)
    for site, array in acts.items():
        io.write_npy(Path(args.out_dir) / f"{site}.npy", array)
    io.write_parquet(Path(args.out_dir) / "samples.parquet", meta)


# --- probing ----------------------------------------------------------------------------------


def cmd_probe(args: argparse.Namespace) -> None:
    from tomlab.probing import probe_heads, probe_layers, top_heads

    samples = pd.read_parquet(args.samples)
    acts = np.load(args.activations, mmap_mode="r")
    if acts.shape[0] != len(samples):
        raise SystemExit(f"tomlab: {args.activations} has {acts.shape[0]} samples, {args.samples} has {len(samples)}")
    is_val = _load_split(samples, args.split)
    kw = dict(C_binary=args.C_binary, C_joint=args.C_joint, max_iter=args.max_iter, seed=args.seed)
    heads = probe_heads(acts, samples, is_val, **kw)
    layers = probe_layers(acts, samples, is_val, **kw)
    top = pd.concat([top_heads(heads, t, k=args.top_k) for t in heads["target"].unique()], ignore_index=True)
    io.write_parquet(args.out_heads, heads)
    io.write_parquet(args.out_layers, layers)
    with io.atomic_path(args.out_top) as tmp:
        top.to_csv(tmp, index=False)


def cmd_lexical(args: argparse.Namespace) -> None:
    from tomlab.probing import lexical_baseline

    samples = pd.read_parquet(args.samples)
    is_val = _load_split(samples, args.split)
    io.write_parquet(
        args.out,
        lexical_baseline(samples, is_val, C_binary=args.C_binary, C_joint=args.C_joint, max_iter=args.max_iter),
    )


def cmd_plot_probing(args: argparse.Namespace) -> None:
    from tomlab.figures import plot_probe_accuracy, plot_probe_selectivity

    heads = pd.read_parquet(args.heads)
    plot_probe_accuracy(heads, args.accuracy, site=args.site)
    plot_probe_selectivity(heads, args.selectivity, site=args.site)


# --- setup summary and report -----------------------------------------------------------------


def cmd_setup_summary(args: argparse.Namespace) -> None:
    import torch
    import transformers

    import tomlab
    from tomlab.data import read_raw

    config = json.loads(args.config_json)
    model = io.read_json(args.model_info)
    raw = read_raw(args.raw)
    samples = pd.read_parquet(args.samples)
    split = pd.read_parquet(args.split)
    n_probe = int(samples["story_id"].nunique())
    summary = {
        "config_hash": args.config_hash,
        "config": config,
        "model": {k: model[k] for k in ("name", "source", "family", "n_layers", "n_heads", "head_dim",
                                         "n_params", "dtype", "device")},
        "data": {
            "source": config["stories"]["source"],
            "raw_file": config.get("bigtom_csv") or "generated by tomlab.stories",
            "n_stories": len(raw),
            "n_probe_stories": n_probe,
            "n_eval_stories": int(len(raw) * config["split"]["eval_fraction"]),
            "n_samples": len(samples),
            "n_train": int((~split["is_val"]).sum()),
            "n_val": int(split["is_val"].sum()),
            "split_mode": config["split"]["mode"],
        },
        "seeds": {
            "stories": config["stories"]["seed"],
            "split": config["split"]["seed"],
            "probing": config["probing"]["seed"],
        },
        "sites": config["activations"]["sites"],
        "tomlab_version": tomlab.__version__,
        "torch_version": torch.__version__,
        "transformers_version": transformers.__version__,
    }
    io.write_json(args.out, summary)


def cmd_report(args: argparse.Namespace) -> None:
    from tomlab.report import render_report

    render_report(Path(args.source).resolve(), Path(args.results).resolve(), args.html, args.pdf, engine=args.engine)


# --- BigToM evaluation (library for the steering issue; rules to follow) ----------------------


def cmd_eval_items(args: argparse.Namespace) -> None:
    from tomlab.evaluation import build_items

    items = build_items(args.conditions, eval_fraction=args.eval_fraction, seed=args.seed,
                        max_stories=args.max_stories)
    io.write_parquet(args.out, items)


def _generation(args: argparse.Namespace) -> Any:
    from tomlab.lm import GenerationConfig

    return GenerationConfig(max_new_tokens=args.max_new_tokens, chat_template=args.chat_template)


def _print_usage(lm: Any) -> None:
    from tomlab.lm import CachedLM

    cache = {"cache_hits": lm.hits, "cache_misses": lm.misses} if isinstance(lm, CachedLM) else {}
    print(json.dumps({"usage": lm.usage.as_dict(), **cache}))


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tomlab.evaluation import evaluate_items, mode_tables
    from tomlab.lm import CachedLM, TransformersLM
    from tomlab.models import load_model_from_config

    items = pd.read_parquet(args.items)
    loaded = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
    lm: Any = TransformersLM(loaded, batch_size=args.batch_size)
    if args.completion_cache:
        lm = CachedLM(lm, args.completion_cache)
    scored = evaluate_items(loaded, items, lm, _generation(args), modes=args.modes, batch_size=args.batch_size)
    table = mode_tables(scored, n_boot=args.n_boot, seed=args.seed)
    io.write_parquet(args.out, scored)
    io.write_parquet(args.out_table, table)
    _print_usage(lm)


# --- steering ---------------------------------------------------------------------------------


def _by_task(values: Sequence[str] | None, what: str) -> dict[str, str]:
    """``["forward_belief=path", ...]`` -> ``{"forward_belief": "path", ...}``."""
    out: dict[str, str] = {}
    for value in values or []:
        task, sep, path = value.partition("=")
        if not sep or not task or not path:
            raise SystemExit(f"tomlab: {what} must be given as TASK=PATH, got {value!r}")
        out[task] = path
    return out


def _task_activations(samples_path: str, acts_path: str) -> tuple[pd.DataFrame, np.ndarray]:
    samples = pd.read_parquet(samples_path)
    acts = np.load(acts_path, mmap_mode="r")
    if acts.shape[0] != len(samples):
        raise SystemExit(f"tomlab: {acts_path} has {acts.shape[0]} samples, {samples_path} has {len(samples)}")
    return samples, acts


def _kinds(names: Sequence[str]) -> list[str]:
    from tomlab.steering import canonical_kind

    return [canonical_kind(n) for n in names]


def cmd_directions(args: argparse.Namespace) -> None:
    from tomlab.steering import build_direction_sets, save_direction_sets

    samples, acts = _task_activations(args.samples, args.activations)
    is_val = _load_split(samples, args.split)
    heads = pd.read_parquet(args.heads)
    sets = build_direction_sets(
        np.asarray(acts, dtype=np.float32), samples, heads, _kinds(args.kinds), k=args.top_k, is_val=is_val, seed=args.seed,
        C_binary=args.C_binary, C_joint=args.C_joint, max_iter=args.max_iter,
    )
    save_direction_sets(args.out, sets)
    print(json.dumps({kind: entry["heads"].tolist() for kind, entry in sets.items()}))


def _sigma_for(theta: np.ndarray, acts_path: str) -> np.ndarray:
    from tomlab.steering import projection_std

    return projection_std(np.asarray(np.load(acts_path, mmap_mode="r"), dtype=np.float32), theta)


def _eval_subset(items: pd.DataFrame, task: str, conditions: Sequence[str], what: str) -> pd.DataFrame:
    sub = items[(items["task"] == task) & items["condition"].isin(list(conditions))]
    if sub.empty:
        raise SystemExit(f"tomlab: the items have no {what} rows for task {task!r} and conditions {list(conditions)}")
    return sub.reset_index(drop=True)


def cmd_steer(args: argparse.Namespace) -> None:
    from tomlab.lm import TransformersLM
    from tomlab.models import load_model_from_config
    from tomlab.steering import evaluate_steered, load_direction_sets

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
    loaded = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
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
    from tomlab.steering import steering_accuracy

    baseline = pd.read_parquet(args.baseline)
    steered = pd.concat([pd.read_parquet(path) for path in args.steered], ignore_index=True)
    table = steering_accuracy(baseline, steered, n_boot=args.n_boot, seed=args.seed)
    io.write_parquet(args.out, table)


def cmd_sweep(args: argparse.Namespace) -> None:
    from tomlab.evaluation import mode_tables
    from tomlab.lm import TransformersLM
    from tomlab.models import load_model_from_config
    from tomlab.steering import evaluate_steered, load_direction_sets

    sets = load_direction_sets(args.directions)
    items = _eval_subset(pd.read_parquet(args.items), args.task, args.conditions, "sweep")
    loaded = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
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
    from tomlab.evaluation import letter_probs
    from tomlab.models import load_model_from_config
    from tomlab.steering import HeadIntervention, load_direction_sets, token_projections

    sets = load_direction_sets(args.directions)
    items = _eval_subset(pd.read_parquet(args.items), args.task, args.conditions, "mechanism")
    loaded = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
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
    from tomlab.evaluation import free_text_prompt
    from tomlab.lm import GenerationConfig, TransformersLM
    from tomlab.models import load_model_from_config
    from tomlab.steering import HeadIntervention, load_direction_sets, steered_generator, intervention_fingerprint

    sets = load_direction_sets(args.directions)
    items = _eval_subset(pd.read_parquet(args.items), args.task, args.conditions, "free-text")
    keep = sorted(items["story_id"].unique())[: args.n_stories]
    items = items[items["story_id"].isin(keep)].reset_index(drop=True)
    prompts = [free_text_prompt(s, q) for s, q in zip(items["story"], items["question"])]
    loaded = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
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


def cmd_cross_task(args: argparse.Namespace) -> None:
    from tomlab.probing import cross_task_correlation

    heads = {task: pd.read_parquet(path) for task, path in _by_task(args.heads, "--heads").items()}
    wide, corr = cross_task_correlation(heads, top_k=args.top_k)
    io.write_parquet(args.out_wide, wide)
    io.write_parquet(args.out_correlations, corr)


def cmd_plot_steering(args: argparse.Namespace) -> None:
    from tomlab.figures import plot_alpha_sweep, plot_cross_task, plot_letter_probs, plot_token_projections

    sweep = pd.read_parquet(args.sweep)
    plot_alpha_sweep(sweep[sweep["task"] == sweep["task"].iloc[0]], args.sweep_stem)
    plot_cross_task(pd.read_parquet(args.cross_wide), pd.read_parquet(args.cross_correlations), args.cross_stem)
    plot_letter_probs(pd.read_parquet(args.letters), args.letters_stem)
    plot_token_projections(pd.read_parquet(args.projections), args.projections_stem)


# --- benchmarks -------------------------------------------------------------------------------


def cmd_bench_probing(args: argparse.Namespace) -> None:
    from tomlab.probing import bench_probing

    samples = pd.read_parquet(args.samples)
    acts = np.load(args.activations, mmap_mode="r")
    is_val = _load_split(samples, args.split)
    result = bench_probing(
        acts, samples, is_val, target=args.target, C=args.C, max_iter=args.max_iter,
        sklearn_tol=args.sklearn_tol, sklearn_max_iter=args.sklearn_max_iter, device=args.device,
    )
    result.update({"activations": str(args.activations), "target_speedup": 20.0, "target_max_acc_gap": 0.01})
    result["target_met"] = bool(result["speedup"] >= 20.0 and result["max_acc_gap"] <= 0.01)
    io.write_json(args.out, result)
    print(json.dumps(result, indent=2))


def cmd_bench_extract(args: argparse.Namespace) -> None:
    from tomlab.activations import bench_extract
    from tomlab.models import load_model_from_config

    samples = pd.read_parquet(args.samples)
    prompts = samples["prompt"].tolist()[: args.n_prompts]
    lm = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
    result = bench_extract(lm, prompts, batch_size=args.batch_size, sites=args.sites)
    result["target_met"] = bool(result["speedup"] >= result["target_speedup"])
    io.write_json(args.out, result)
    print(json.dumps(result, indent=2))


# --- parser -----------------------------------------------------------------------------------


def _add_direction_args(p: argparse.ArgumentParser) -> None:
    """Which saved directions to apply: the file, the activations that set sigma, task, site, kinds."""
    p.add_argument("--directions", required=True)
    p.add_argument("--activations", required=True)
    p.add_argument("--task", default="forward_belief")
    p.add_argument("--site", required=True)
    p.add_argument("--kinds", nargs="+", required=True)


def _add_answer_args(p: argparse.ArgumentParser) -> None:
    """Model, items and decoding options shared by the commands that answer evaluation items."""
    _add_model_args(p)
    p.add_argument("--items", required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--modes", nargs="+", default=["generation", "log-likelihood"],
                   choices=["generation", "log-likelihood"])
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.add_argument("--completion-cache", default=None, help="folder of the on-disk completion cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tomlab", description=__doc__)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("generate-stories", help="write BigToM-format stories from tomlab's own templates")
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--seed", type=int, default=0)
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

    p = sub.add_parser("probe-samples", help="the four probing samples of each story of the probe split")
    p.add_argument("--conditions", required=True)
    p.add_argument("--task", default="forward_belief", choices=["forward_belief", "forward_action", "backward_belief"])
    p.add_argument("--eval-fraction", type=float, default=0.5)
    p.add_argument("--max-stories", type=int, default=None)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_probe_samples)

    p = sub.add_parser("split", help="train/validation split of the probe samples")
    p.add_argument("--samples", required=True)
    p.add_argument("--val-fraction", type=float, default=0.2)
    p.add_argument("--mode", choices=["by_story", "by_sample"], default="by_story")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_split)

    p = sub.add_parser("prepare-model", help="load (and convert once) the model; write its description")
    _add_model_args(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_prepare_model)

    p = sub.add_parser("extract", help="per-head activations at the last token")
    _add_model_args(p)
    p.add_argument("--samples", required=True)
    p.add_argument("--sites", nargs="+", default=["attn_out", "head_z"], choices=["attn_out", "head_z"])
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_extract)

    def add_probe_hparams(q: argparse.ArgumentParser) -> None:
        q.add_argument("--C-binary", type=float, default=10.0)
        q.add_argument("--C-joint", type=float, default=1.0)
        q.add_argument("--max-iter", type=int, default=1000)

    p = sub.add_parser("probe", help="probes per head and per layer, with the shuffled-label control")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    add_probe_hparams(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top-k", type=int, default=10)
    p.add_argument("--out-heads", required=True)
    p.add_argument("--out-layers", required=True)
    p.add_argument("--out-top", required=True)
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("lexical", help="bag-of-words baseline on the prompt text alone")
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    add_probe_hparams(p)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_lexical)

    p = sub.add_parser("plot-probing", help="accuracy and selectivity heatmaps (PNG and SVG)")
    p.add_argument("--heads", required=True)
    p.add_argument("--site", default="")
    p.add_argument("--accuracy", required=True, help="output stem (without extension)")
    p.add_argument("--selectivity", required=True, help="output stem (without extension)")
    p.set_defaults(func=cmd_plot_probing)

    p = sub.add_parser("setup-summary", help="model, data, sizes, seeds and config hash for the report")
    p.add_argument("--config-json", required=True)
    p.add_argument("--config-hash", required=True)
    p.add_argument("--model-info", required=True)
    p.add_argument("--raw", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_setup_summary)

    p = sub.add_parser("report", help="render the Quarto report to HTML and PDF")
    p.add_argument("--source", required=True)
    p.add_argument("--results", required=True)
    p.add_argument("--html", required=True)
    p.add_argument("--pdf", required=True)
    p.add_argument("--engine", choices=["auto", "quarto", "builtin"], default="auto")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("eval-items", help="BigToM multiple-choice items on the evaluation split")
    p.add_argument("--conditions", required=True)
    p.add_argument("--eval-fraction", type=float, default=0.5)
    p.add_argument("--max-stories", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_eval_items)

    p = sub.add_parser("evaluate", help="answer the items (generation and log-likelihood) and score them")
    _add_answer_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--out-table", required=True)
    p.set_defaults(func=cmd_evaluate)

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

    p = sub.add_parser("cross-task", help="correlation of per-head probe accuracies across tasks")
    p.add_argument("--heads", nargs="+", required=True, help="TASK=heads.parquet")
    p.add_argument("--top-k", type=int, default=16)
    p.add_argument("--out-wide", required=True)
    p.add_argument("--out-correlations", required=True)
    p.set_defaults(func=cmd_cross_task)

    p = sub.add_parser("plot-steering", help="Figures 5-8 (PNG and SVG)")
    for name in ("sweep", "cross-wide", "cross-correlations", "letters", "projections"):
        p.add_argument(f"--{name}", required=True)
    for name in ("sweep", "cross", "letters", "projections"):
        p.add_argument(f"--{name}-stem", required=True)
    p.set_defaults(func=cmd_plot_steering)

    bench = sub.add_parser("bench", help="benchmarks written to results/bench/*.json").add_subparsers(
        dest="bench", required=True
    )
    p = bench.add_parser("probing", help="batched torch probes vs the scikit-learn loop")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--target", default="oracle")
    p.add_argument("--C", type=float, default=10.0)
    p.add_argument("--max-iter", type=int, default=1000)
    p.add_argument("--sklearn-tol", type=float, default=1e-8,
                   help="tolerance of the scikit-learn reference; tight, so both paths reach the optimum")
    p.add_argument("--sklearn-max-iter", type=int, default=10000)
    p.add_argument("--device", default="cpu", help="where the batched probes run (cpu, cuda)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bench_probing)

    p = bench.add_parser("extract", help="batched vs one-at-a-time activation extraction")
    _add_model_args(p)
    p.add_argument("--samples", required=True)
    p.add_argument("--sites", nargs="+", default=["attn_out", "head_z"], choices=["attn_out", "head_z"])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--n-prompts", type=int, default=64)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bench_extract)

    from tomlab.cli_team import add_team_commands

    add_team_commands(sub, _add_model_args)

    from tomlab.cli_debate import add_debate_commands, add_plot_command

    add_debate_commands(sub)
    add_plot_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    try:
        args.func(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"tomlab {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
