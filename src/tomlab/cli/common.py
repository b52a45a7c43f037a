"""Helpers the subcommands share: model flags, task-keyed arguments, loading a split."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab import io
from tomlab.bigtom.conditions import MAIN_TASK, TASKS
from tomlab.schema import default as schema_default
from tomlab.schema import vocabulary


def _model_cfg(args: argparse.Namespace) -> dict[str, Any]:
    cfg = json.loads(args.model_json) if args.model_json else {}
    if args.model:
        cfg["name"] = args.model
    if "name" not in cfg and "base_url" not in cfg:
        raise SystemExit("tomlab: give the model with --model NAME, --model-json '{\"name\": ...}', or a served "
                         "model with --model-json '{\"base_url\": ..., \"model\": ...}'")
    return cfg


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="model name: embedded:smollm2-135m-instruct, random:<family>, a hub id or a folder")
    p.add_argument("--model-json", help="the config's model section as JSON (name, dtype, device, ...)")
    p.add_argument("--cache-dir", help="where converted embedded models are kept (default ~/.cache/tomlab)")


def _load_split(samples: pd.DataFrame, split_path: str) -> np.ndarray:
    split = io.read_parquet(split_path)
    merged = samples[["sample_id"]].merge(split[["sample_id", "is_val"]], on="sample_id", how="left")
    if merged["is_val"].isna().any():
        raise SystemExit(f"tomlab: {split_path} does not cover every sample of the sample table")
    return merged["is_val"].to_numpy(dtype=bool)


def _chat_template(args: argparse.Namespace, items: pd.DataFrame) -> bool:
    """``--chat-template`` / ``--no-chat-template`` when given, else the items' protocol's choice."""
    from tomlab.bigtom.evaluation import items_protocol
    from tomlab.bigtom.protocol import uses_chat_template

    return uses_chat_template(items_protocol(items), args.chat_template)


def _generation(args: argparse.Namespace, items: pd.DataFrame) -> Any:
    from tomlab.backends.lm import GenerationConfig

    return GenerationConfig(max_new_tokens=args.max_new_tokens, chat_template=_chat_template(args, items))


def _print_usage(lm: Any) -> None:
    from tomlab.backends.build import usage_report

    print(json.dumps(usage_report(lm)))


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
    samples = io.read_parquet(samples_path)
    acts = io.read_npy(acts_path)
    if acts.shape[0] != len(samples):
        raise SystemExit(f"tomlab: {acts_path} has {acts.shape[0]} samples, {samples_path} has {len(samples)}")
    return samples, acts


def _kinds(names: Sequence[str]) -> list[str]:
    from tomlab.steering.directions import canonical_kind

    return [canonical_kind(n) for n in names]


def _add_probe_hparams(p: argparse.ArgumentParser) -> None:
    """The probes' regularisation and iteration cap (probe, lexical baseline, steering directions)."""
    p.add_argument("--C-binary", type=float, default=schema_default("probing.C_binary"))
    p.add_argument("--C-joint", type=float, default=schema_default("probing.C_joint"))
    p.add_argument("--max-iter", type=int, default=schema_default("probing.max_iter"))


def _add_direction_args(p: argparse.ArgumentParser) -> None:
    """Which saved directions to apply: the file, the activations that set sigma, task, site, kinds."""
    p.add_argument("--directions", required=True)
    p.add_argument("--activations", required=True)
    p.add_argument("--task", default=MAIN_TASK, choices=TASKS)
    p.add_argument("--site", required=True)
    p.add_argument("--kinds", nargs="+", required=True)


def _add_answer_args(p: argparse.ArgumentParser) -> None:
    """Model, items and decoding options shared by the commands that answer evaluation items."""
    _add_model_args(p)
    p.add_argument("--items", required=True)
    p.add_argument("--batch-size", type=int, default=schema_default("evaluation.batch_size"))
    p.add_argument("--max-new-tokens", type=int, default=schema_default("evaluation.max_new_tokens"))
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction,
                   default=schema_default("evaluation.chat_template"),
                   help="render prompts with the chat template (default: the items' protocol's choice)")
    p.add_argument("--modes", nargs="+", default=schema_default("evaluation.modes"), choices=vocabulary("mode"))
    p.add_argument("--n-boot", type=int, default=schema_default("evaluation.n_boot"))
    p.add_argument("--seed", type=int, default=schema_default("evaluation.seed"), help="bootstrap seed")
    p.add_argument("--completion-cache", default=None, help="folder of the on-disk completion cache")


def _add_shared_prefix(p: argparse.ArgumentParser) -> None:
    """How steered evaluation runs: shared prefixes (the default) or the token-by-token path."""
    p.add_argument("--shared-prefix", action=argparse.BooleanOptionalAction,
                   default=schema_default("steering.shared_prefix"),
                   help="branch every intervention from one pass over each prompt's prefix (KV cache); "
                        "--no-shared-prefix: the token-by-token path")
