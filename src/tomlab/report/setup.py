"""The report's setup section: what the run used, and the benchmarks."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from tomlab.manifest import Manifest
from tomlab.report.common import _get, _human_count


def setup_table(setup: Mapping[str, Any]) -> pd.DataFrame:
    """Two columns (item, value) describing model, data, split, seeds, sites and versions."""
    model = setup.get("model") or {}
    data = setup.get("data") or {}
    seeds = setup.get("seeds") or {}
    split = _get(data, "split_mode")
    split_note = {
        "by_story": "by_story (no story in both train and val)",
        "by_sample": "by_sample (original; samples of one story can straddle the split)",
    }.get(split, str(split))
    rows: list[tuple[str, str]] = [
        ("model", str(_get(model, "name"))),
        ("family", str(_get(model, "family"))),
        (
            "layers x heads x head_dim",
            f"{_get(model, 'n_layers')} x {_get(model, 'n_heads')} x {_get(model, 'head_dim')}",
        ),
        ("parameters", _human_count(_get(model, "n_params"))),
        ("dtype / device", f"{_get(model, 'dtype')} / {_get(model, 'device')}"),
        ("revision", str(model.get("revision") or "none (not a hub model)")),
        ("data source", f"{_get(data, 'source')} ({_get(data, 'raw_file')})"),
        (
            "stories (probe / eval)",
            f"{_get(data, 'n_stories')} ({_get(data, 'n_probe_stories')} / {_get(data, 'n_eval_stories')})",
        ),
        (
            "samples (train / val)",
            f"{_get(data, 'n_samples')} ({_get(data, 'n_train')} / {_get(data, 'n_val')})",
        ),
        ("split mode", split_note),
        (
            "seeds",
            ", ".join(f"{k} {v}" for k, v in seeds.items()) if seeds else "n/a",
        ),
        ("sites", ", ".join(str(s) for s in setup.get("sites") or []) or "n/a"),
        ("config hash", str(_get(setup, "config_hash"))),
        (
            "versions",
            f"tomlab {_get(setup, 'tomlab_version')}, torch {_get(setup, 'torch_version')}, "
            f"transformers {_get(setup, 'transformers_version')}",
        ),
    ]
    return pd.DataFrame(rows, columns=["item", "value"])


def _bench_rows(name: str, data: Mapping[str, Any], known: Sequence[tuple[str, str, str]]) -> list[dict[str, str]]:
    """The known quantities of one benchmark, then its target (if it records one) and hardware."""
    rows = []
    for key, label, fmt in known:
        if key in data:
            rows.append({"benchmark": name, "quantity": label, "value": _fmt_value(data[key], fmt)})
    if "target_speedup" in data:
        met = data.get("target_met")
        verdict = "" if met is None else (" (met)" if met else " (not met)")
        rows.append(
            {"benchmark": name, "quantity": "speedup target (x)", "value": _fmt_value(data["target_speedup"], ".1f") + verdict}
        )
    if "target_max_acc_gap" in data:
        rows.append(
            {"benchmark": name, "quantity": "accuracy gap allowed", "value": _fmt_value(data["target_max_acc_gap"], ".4f")}
        )
    hardware = [str(data[k]) for k in ("device", "dtype") if data.get(k) is not None]
    if "torch_threads" in data:
        hardware.append(f"{data['torch_threads']} torch threads")
    if hardware:
        rows.append({"benchmark": name, "quantity": "run on", "value": ", ".join(hardware)})
    return rows


def _fmt_value(value: Any, fmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if fmt:
            return format(value, fmt)
        return f"{value:.4g}"
    return str(value)


def bench_table(m: Manifest) -> pd.DataFrame:
    """Benchmark numbers from the manifest's ``bench_*`` JSON files (probing, extract, steering, generation;
    empty if none is present)."""
    rows: list[dict[str, str]] = []
    specs = {
        "probing": [
            ("speedup", "speedup, batched vs scikit-learn (x)", ".1f"),
            ("max_acc_gap", "max accuracy gap vs scikit-learn", ".4f"),
            ("batched_seconds", "batched probes (s)", ".2f"),
            ("sklearn_seconds", "scikit-learn probes (s)", ".2f"),
            ("n_probes", "probes fitted", ""),
            ("target", "probe target", ""),
            ("joint_top_k_overlap", "joint probe: top heads shared, released 100-iteration cap vs converged", ""),
            ("joint_top_k", "joint probe: top heads compared", ""),
            ("joint_capped_not_converged", "joint probe: capped fits stopped at the cap", ""),
            ("joint_tpfo_cosine_top_k_mean", "joint probe: TpFo direction cosine, capped vs converged (top heads)", ".3f"),
            ("joint_tpfo_cosine_min", "joint probe: TpFo direction cosine, capped vs converged (minimum)", ".3f"),
        ],
        "extract": [
            ("batched_tokens_per_s", "batched extraction (tokens/s)", ",.0f"),
            ("single_tokens_per_s", "one-at-a-time extraction (tokens/s)", ",.0f"),
            ("speedup", "speedup (x)", ".1f"),
            ("batch_size", "batch size", ""),
            ("n_prompts", "prompts", ""),
            ("peak_gflops", "measured matmul peak (GFLOP/s)", ",.0f"),
            ("mfu", "model FLOP utilisation, batched (share of the measured peak)", ".2f"),
            ("target_mfu", "utilisation target", ".2f"),
            ("mfu_target_met", "utilisation target met", ""),
        ],
        "steering": [
            ("speedup", "speedup, shared prefixes vs token-by-token (x)", ".1f"),
            ("shared_seconds", "shared prefixes (s)", ".1f"),
            ("stepwise_seconds", "token-by-token (s)", ".1f"),
            ("items", "items", ""),
            ("interventions", "interventions (kinds x alphas)", ""),
            ("identical_answers", "identical parsed answers and log-likelihood choices", ""),
            ("vs_stepwise_same_parsed", "same parsed answer (of the rows)", ""),
            ("vs_stepwise_same_completions", "same greedy completion", ""),
            ("vs_stepwise_same_ll_pred", "same log-likelihood choice", ""),
            ("vs_stepwise_max_abs_logp_diff", "largest log-likelihood difference", ".4f"),
            ("vs_stepwise_rows", "rows compared", ""),
            ("noise_floor_same_completions", "noise floor: token-by-token at batch 1 vs batched, same completion", ""),
            ("noise_floor_max_abs_logp_diff", "noise floor: largest log-likelihood difference", ".4f"),
            ("noise_floor_rows", "noise floor: rows compared", ""),
            ("float32_identical_answers", "float32: identical answers", ""),
            ("float32_same_completions", "float32: same greedy completion", ""),
            ("float32_max_abs_logp_diff", "float32: largest log-likelihood difference", ".2e"),
            ("float32_rows", "float32: rows compared", ""),
        ],
        "generation": [
            ("n_prompts", "prompts", ""),
            ("max_new_tokens", "new tokens per prompt", ""),
            ("best_batch_size", "fastest batch size", ""),
            ("speedup_largest_vs_smallest", "largest vs smallest batch (x)", ".1f"),
            ("identical", "same completions at every batch size", ""),
        ],
    }
    for name, known in specs.items():
        path = m.get(f"bench_{name}")
        if path is not None and path.is_file():
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, dict):
                rows.extend(_bench_rows(name, data, known))
                rows.extend(_throughput_rows(name, data))
    return pd.DataFrame(rows, columns=["benchmark", "quantity", "value"])


def _throughput_rows(name: str, data: Mapping[str, Any]) -> list[dict[str, str]]:
    """The generation benchmark's rate at each batch size, and llama.cpp's when it ran."""
    rows = [{"benchmark": name, "quantity": f"completion tokens/s at batch {r['batch_size']}",
             "value": _fmt_value(float(r["completion_tokens_per_s"]), ",.0f")}
            for r in data.get("by_batch_size") or [] if isinstance(r, Mapping)]
    llama = data.get("llama_cpp")
    if isinstance(llama, Mapping):
        rows.append({"benchmark": name, "quantity": f"llama.cpp {llama.get('version', '')}, one stream, "
                     f"{llama.get('threads', '?')} threads (completion tokens/s)",
                     "value": _fmt_value(float(llama.get("completion_tokens_per_s", float("nan"))), ",.0f")})
    elif isinstance(llama, str):
        rows.append({"benchmark": name, "quantity": "llama.cpp", "value": llama})
    return rows


def run_summary(config: Mapping[str, Any], config_hash: str, model: Mapping[str, Any], raw: pd.DataFrame,
                samples: pd.DataFrame, split: pd.DataFrame, name: str | None = None) -> dict[str, Any]:
    """What a run used, for ``setup.json``: the config and its hash, the model's shape (and its name in the
    run's panel, ``panel_name``), the data and its split, the seeds, the sites, and the versions of tomlab,
    torch and transformers."""
    import torch
    import transformers

    import tomlab

    return {
        "config_hash": config_hash,
        "panel_name": name,
        "config": dict(config),
        "model": {k: model.get(k) for k in ("name", "source", "family", "n_layers", "n_heads", "head_dim",
                                             "hidden_size", "n_params", "dtype", "device", "chat_template",
                                             "revision")},
        "data": {
            "source": config["stories"]["source"],
            "raw_file": config.get("bigtom_csv") or "generated by tomlab.bigtom.stories",
            "n_stories": len(raw),
            "n_probe_stories": int(samples["story_id"].nunique()),
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
