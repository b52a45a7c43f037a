"""Subcommands for the benchmarks (results/bench/*.json): probing, extraction, steering, generation."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tomlab import io
from tomlab.cli.common import (
    _add_answer_args,
    _add_direction_args,
    TOP_K,
    _add_model_args,
    _generation,
    _items,
    _kinds,
    _load_split,
    _model_cfg,
    int_range,
    positive_float,
)
from tomlab.bigtom.protocol import ORIGINAL_CONDITIONS
from tomlab.debate.tasks import COT_INSTRUCTION, cot_prompts
from tomlab.schema import default as schema_default
from tomlab.schema import vocabulary


def cmd_bench_probing(args: argparse.Namespace) -> None:
    from tomlab.probing.bench import bench_joint_cap, bench_probing

    samples = io.read_table(args.samples, ("sample_id", args.target), flag="--samples")
    acts = io.read_npy(args.activations)
    is_val = _load_split(samples, args.split)
    result = bench_probing(
        acts, samples, is_val, target=args.target, C=args.C, max_iter=args.max_iter,
        sklearn_tol=args.sklearn_tol, sklearn_max_iter=args.sklearn_max_iter, device=args.device,
    )
    result.update(bench_joint_cap(
        acts, samples, is_val, capped_max_iter=args.joint_capped_max_iter, top_k=args.top_k, C=args.C_joint,
        max_iter=args.max_iter, device=args.device,
    ))
    result.update({"activations": str(args.activations), "target_speedup": 20.0, "target_max_acc_gap": 0.01})
    result["target_met"] = bool(result["speedup"] >= 20.0 and result["max_acc_gap"] <= 0.01)
    io.write_json(args.out, result)
    print(json.dumps(result, indent=2))


def cmd_bench_extract(args: argparse.Namespace) -> None:
    from tomlab.backends.activations import bench_extract
    from tomlab.backends.build import load_local

    samples = io.read_table(args.samples, ("prompt",), flag="--samples")
    prompts = samples["prompt"].tolist()[: args.n_prompts]
    lm = load_local(_model_cfg(args), cache_dir=args.cache_dir)
    result = bench_extract(lm, prompts, batch_size=args.batch_size, sites=args.sites)
    result["target_met"] = bool(result["speedup"] >= result["target_speedup"])
    result["mfu_target_met"] = bool(result["mfu"] >= result["target_mfu"])
    io.write_json(args.out, result)
    print(json.dumps(result, indent=2))


def cmd_bench_steering(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.steering.bench import bench_steering
    from tomlab.steering.directions import load_direction_sets
    from tomlab.steering.run import eval_subset

    sets = load_direction_sets(args.directions)
    acts = io.read_npy(args.activations)
    items = _items(args.items)
    sub = eval_subset(items, args.task, args.conditions, "benchmark").iloc[: args.n_items].reset_index(drop=True)
    spec = _model_cfg(args)
    lm = load_local(spec, cache_dir=args.cache_dir)
    interventions = []
    for kind in _kinds(args.kinds):
        if kind not in sets:
            raise SystemExit(f"tomlab bench steering: {args.directions} has no direction kind {kind!r}")
        base = sets[kind].intervention(args.site, sets[kind].spread(acts), 0.0)
        interventions += [base.with_alpha(alpha) for alpha in args.alphas]
    lm32 = None
    if args.float32_items and str(lm.dtype) != "torch.float32":
        lm32 = load_local({**spec, "dtype": "float32"}, cache_dir=args.cache_dir)
    result = bench_steering(lm, sub, interventions, _generation(args, items), modes=args.modes,
                            batch_size=args.batch_size, lm_float32=lm32, float32_items=args.float32_items)
    io.write_json(args.out, result)
    print(json.dumps(result, indent=2))


def cmd_bench_generation(args: argparse.Namespace) -> None:
    from tomlab.backends.build import load_local
    from tomlab.backends.throughput import (
        embedded_gguf_path,
        generation_throughput,
        llama_cpp_throughput,
    )

    items = io.read_table(args.items, ("question",), flag="--items")
    questions = [str(q) for q in items["question"]]
    if not questions:
        raise SystemExit(f"tomlab bench generation: {args.items} has no questions")
    prompts = cot_prompts(questions, args.n_prompts, args.instruction)  # a chain-of-thought baseline's shape
    spec = _model_cfg(args)
    lm = load_local(spec, cache_dir=args.cache_dir)
    table = generation_throughput(lm, prompts, args.batch_sizes, max_new_tokens=args.max_new_tokens)
    rates = dict(zip(table["batch_size"], table["completion_tokens_per_s"]))
    result: dict[str, Any] = {
        "model": lm.name, "device": str(lm.device), "dtype": str(lm.dtype).removeprefix("torch."),
        "n_prompts": len(prompts), "max_new_tokens": args.max_new_tokens,
        "by_batch_size": table.to_dict(orient="records"),
        "identical": bool(table["identical"].all()),
        "best_batch_size": int(max(rates, key=rates.get)),
        "speedup_largest_vs_smallest": float(table["completion_tokens_per_s"].iloc[-1]
                                             / table["completion_tokens_per_s"].iloc[0]),
    }
    gguf = embedded_gguf_path() if str(spec.get("name", "")).startswith("embedded:") else None
    llama = llama_cpp_throughput(gguf, prompts, max_new_tokens=args.max_new_tokens,
                                 threads=args.llama_threads) if gguf else None
    result["llama_cpp"] = llama if llama is not None else "not run (llama-cpp-python is not installed, or the model is not the embedded GGUF)"
    io.write_json(args.out, result)
    print(json.dumps(result, indent=2))


def add_commands(sub: Any) -> None:
    """Register this module's subcommands on the top-level subparsers."""
    bench = sub.add_parser("bench", help="benchmarks written to results/bench/*.json").add_subparsers(
        dest="bench", required=True
    )
    p = bench.add_parser("probing", help="batched torch probes vs the scikit-learn loop")
    p.add_argument("--activations", required=True)
    p.add_argument("--samples", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--target", default=schema_default("bench.probing_target"))
    p.add_argument("--C", type=positive_float, default=schema_default("probing.C_binary"))
    p.add_argument("--max-iter", type=int_range(1), default=schema_default("probing.max_iter"))
    p.add_argument("--sklearn-tol", type=positive_float, default=1e-8,
                   help="tolerance of the scikit-learn reference; tight, so both paths reach the optimum")
    p.add_argument("--sklearn-max-iter", type=int_range(1), default=10000)
    p.add_argument("--C-joint", type=positive_float, default=schema_default("probing.C_joint"))
    p.add_argument("--joint-capped-max-iter", type=int_range(1), default=schema_default("bench.joint_capped_max_iter"),
                   help="lbfgs iterations of the capped joint probe (the original's: 100)")
    p.add_argument("--top-k", type=TOP_K, default=schema_default("steering.top_k"),
                   help="heads compared between the capped and the converged joint probe")
    p.add_argument("--device", default="cpu", help="where the batched probes run (cpu, cuda)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bench_probing)

    p = bench.add_parser("extract", help="batched vs one-at-a-time activation extraction")
    _add_model_args(p)
    p.add_argument("--samples", required=True)
    p.add_argument("--sites", nargs="+", default=schema_default("activations.sites"), choices=vocabulary("site"))
    p.add_argument("--batch-size", type=int_range(1, 100_000), default=schema_default("bench.extract_batch_size"))
    p.add_argument("--n-prompts", type=int_range(1, 1_000_000), default=schema_default("bench.extract_prompts"))
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bench_extract)

    p = bench.add_parser("steering", help="shared-prefix steering against the token-by-token path")
    _add_answer_args(p)
    _add_direction_args(p)
    p.add_argument("--alphas", nargs="+", type=float, required=True)
    p.add_argument("--conditions", nargs="+", default=list(ORIGINAL_CONDITIONS))
    p.add_argument("--n-items", type=int_range(1, 1_000_000), default=schema_default("bench.steering_items"))
    p.add_argument("--float32-items", type=int_range(0, 1_000_000), default=schema_default("bench.float32_items"),
                   help="items both paths also run in float32 (0: none)")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bench_steering)

    p = bench.add_parser("generation", help="completion tokens per second against the batch size")
    _add_model_args(p)
    p.add_argument("--items", required=True, help="a debate task's items (their questions become the prompts)")
    p.add_argument("--instruction", default=COT_INSTRUCTION, help="added after each question")
    p.add_argument("--n-prompts", type=int_range(1, 1_000_000), default=schema_default("bench.generation_prompts"))
    p.add_argument("--batch-sizes", nargs="+", type=int_range(1, 100_000), default=schema_default("bench.generation_batch_sizes"))
    p.add_argument("--max-new-tokens", type=int_range(1, 1_000_000),
                   default=schema_default("bench.generation_max_new_tokens"))
    p.add_argument("--llama-threads", type=int_range(1, 4096), default=2, help="llama.cpp threads, when it is installed")
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_bench_generation)
