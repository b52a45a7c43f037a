"""Helpers the subcommands share: model flags, task-keyed arguments, loading a split, and the argument
types that bound numeric flags and check JSON flags (errors name the flag, never a traceback)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tomlab import io
from tomlab.bigtom.conditions import MAIN_TASK, TASKS
from tomlab.schema import default as schema_default
from tomlab.schema import vocabulary


#: The largest count a command accepts for a flag without a tighter bound of its own.
MAX_COUNT = 10_000_000


def int_range(low: int, high: int = MAX_COUNT) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high``; argparse names the flag in the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be an integer from {low} to {high}, got {value}")
        return value

    parse.__name__ = "integer"
    return parse


def _fraction(text: str, zero: bool) -> float:
    low = "from 0 (included)" if zero else "strictly between 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number {low} and 1, got {text!r}") from None
    if not ((0.0 <= value) if zero else (0.0 < value)) or not value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number {low} and 1 (excluded), got {value:g}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1."""
    return _fraction(text, zero=False)


def share(text: str) -> float:
    """An argparse type: a number from 0 (included) to 1 (excluded)."""
    return _fraction(text, zero=True)


def positive_float(text: str) -> float:
    """An argparse type: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not 0.0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {value:g}")
    return value


def json_object(text: str | None, flag: str) -> dict[str, Any]:
    """The JSON object a ``--...-json`` flag holds (``{}`` when not given); an error naming ``flag`` when it
    is not valid JSON or not an object."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag}: not valid JSON ({err.msg} at character {err.pos})") from None
    if not isinstance(value, dict):  # bad input, not a bad call: the command line reports a ValueError
        raise ValueError(f"{flag}: expected a JSON object ({{...}}), got {type(value).__name__} {text[:60]!r}")  # noqa: TRY004
    return value


#: Bootstrap resamples: at least one, at most a million.
N_BOOT = int_range(1, 1_000_000)
#: Heads kept (top k) and similar small counts.
TOP_K = int_range(1, 100_000)


def _model_cfg(args: argparse.Namespace) -> dict[str, Any]:
    cfg = json_object(args.model_json, "--model-json")
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


#: The columns of evaluation items (:data:`tomlab.bigtom.evaluation.ITEM_COLUMNS`) every reader uses;
#: ``protocol``, ``parser`` and ``in_original`` may be missing (older tables: the defaults apply).
ITEM_COLUMNS = ("item_id", "story_id", "task", "condition", "story", "question", "correct", "wrong",
                "option_a", "option_b", "answer_letter", "prompt")
#: The probe targets' label columns of a sample table (:data:`tomlab.probing.probes.TARGETS`).
TARGET_COLUMNS = ("oracle", "protagonist", "joint")
#: The columns of a per-head probe table (``tomlab probe``) that its readers use.
HEAD_COLUMNS = ("layer", "head", "target", "val_acc")


def _items(path: str, flag: str = "--items") -> pd.DataFrame:
    """Evaluation items (``tomlab eval-items``, ``stress-items``, ``stress-minds``), checked for their columns."""
    return io.read_table(path, ITEM_COLUMNS, flag=flag)


#: The columns of a probing split (``tomlab split``) that its readers use.
SPLIT_COLUMNS = ("sample_id", "is_val")


def _load_split(samples: pd.DataFrame, split_path: str) -> np.ndarray:
    split = io.read_table(split_path, SPLIT_COLUMNS, flag="--split")
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


def _task_activations(samples_path: str, acts_path: str, columns: Sequence[str] = ("sample_id",),
                      flag: str = "--samples") -> tuple[pd.DataFrame, np.ndarray]:
    """The samples (with ``columns``) and their activations, which must have a row per sample."""
    samples = io.read_table(samples_path, columns, flag=flag)
    acts = io.read_npy(acts_path)
    if acts.shape[0] != len(samples):
        raise SystemExit(f"tomlab: {acts_path} has {acts.shape[0]} samples, {samples_path} has {len(samples)}")
    return samples, acts


def _kinds(names: Sequence[str]) -> list[str]:
    from tomlab.steering.directions import canonical_kind

    return [canonical_kind(n) for n in names]


def _add_probe_hparams(p: argparse.ArgumentParser) -> None:
    """The probes' regularisation and iteration cap (probe, lexical baseline, steering directions)."""
    p.add_argument("--C-binary", type=positive_float, default=schema_default("probing.C_binary"))
    p.add_argument("--C-joint", type=positive_float, default=schema_default("probing.C_joint"))
    p.add_argument("--max-iter", type=int_range(1), default=schema_default("probing.max_iter"))


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
    p.add_argument("--batch-size", type=int_range(1, 100_000), default=schema_default("evaluation.batch_size"))
    p.add_argument("--max-new-tokens", type=int_range(1, 1_000_000), default=schema_default("evaluation.max_new_tokens"))
    p.add_argument("--chat-template", action=argparse.BooleanOptionalAction,
                   default=schema_default("evaluation.chat_template"),
                   help="render prompts with the chat template (default: the items' protocol's choice)")
    p.add_argument("--modes", nargs="+", default=schema_default("evaluation.modes"), choices=vocabulary("mode"))
    p.add_argument("--n-boot", type=N_BOOT, default=schema_default("evaluation.n_boot"))
    p.add_argument("--seed", type=int, default=schema_default("evaluation.seed"), help="bootstrap seed")
    p.add_argument("--completion-cache", default=None, help="folder of the on-disk completion cache")


def _add_shared_prefix(p: argparse.ArgumentParser) -> None:
    """How steered evaluation runs: shared prefixes (the default) or the token-by-token path."""
    p.add_argument("--shared-prefix", action=argparse.BooleanOptionalAction,
                   default=schema_default("steering.shared_prefix"),
                   help="branch every intervention from one pass over each prompt's prefix (KV cache); "
                        "--no-shared-prefix: the token-by-token path")
