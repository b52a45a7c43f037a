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

    samples = build_probe_samples(args.conditions, eval_fraction=args.eval_fraction, max_stories=args.max_stories)
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


def cmd_evaluate(args: argparse.Namespace) -> None:
    from tomlab.evaluation import accuracy_table, option_logprobs, score_generation
    from tomlab.lm import CachedLM, GenerationConfig, TransformersLM
    from tomlab.models import load_model_from_config

    items = pd.read_parquet(args.items)
    loaded = load_model_from_config(_model_cfg(args), cache_dir=args.cache_dir)
    lm: Any = TransformersLM(loaded, batch_size=args.batch_size)
    if args.completion_cache:
        lm = CachedLM(lm, args.completion_cache)
    config = GenerationConfig(max_new_tokens=args.max_new_tokens, chat_template=args.chat_template)
    scored = score_generation(items, lambda prompts: [c.text for c in lm.generate(prompts, config)])
    scored = option_logprobs(loaded, scored, batch_size=args.batch_size, chat_template=args.chat_template)
    table = pd.concat(
        [accuracy_table(scored, "correct_pred").assign(mode="generation"),
         accuracy_table(scored, "ll_correct").assign(mode="log-likelihood")],
        ignore_index=True,
    )
    io.write_parquet(args.out, scored)
    io.write_parquet(args.out_table, table)
    cache = {"cache_hits": lm.hits, "cache_misses": lm.misses} if isinstance(lm, CachedLM) else {}
    print(json.dumps({"usage": lm.usage.as_dict(), **cache}))


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
    _add_model_args(p)
    p.add_argument("--items", required=True)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=20)
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--completion-cache", default=None, help="folder of the on-disk completion cache")
    p.add_argument("--out", required=True)
    p.add_argument("--out-table", required=True)
    p.set_defaults(func=cmd_evaluate)

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
