"""tomlab plan: geometry without weights, the projection's memory and time, and the plan against a run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tomlab.plan.devices import GPUS, Device, device
from tomlab.plan.geometry import KNOWN, Geometry, from_config, geometry_of
from tomlab.plan.project import job_row, pass_cost, planned_lm, run_dtype
from tomlab.plan.work import JobWork, Pass
from tomlab.report.cost import PLAN_BOUND, plan_against_measured, plan_by_experiment, plan_summary

TINY = {"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 1, "head_dim": 32}


def _matrix_params(model) -> int:
    seen, total = set(), 0
    for p in model.parameters():
        if p.dim() >= 2 and id(p) not in seen:
            seen.add(id(p))
            total += p.numel()
    return total


@pytest.mark.parametrize(("family", "extra"), [("llama", {}), ("gemma3_text", {}), ("mistral", {"tie_word_embeddings": True})])
def test_the_geometry_of_a_random_model_counts_its_weights_and_kv_cache_as_the_built_model_has_them(family, extra):
    from tomlab.backends.batching import kv_bytes_per_token
    from tomlab.backends.memory import row_bytes
    from tomlab.backends.models import load_model

    spec = {"name": f"random:{family}", "random_config": {**TINY, **extra}}
    geometry = geometry_of(spec)
    lm = load_model(spec["name"], dtype="float32", device="cpu", random_config=spec["random_config"])
    assert geometry.params == _matrix_params(lm.model)
    stand_in = planned_lm(geometry, "float32", GPUS["h100"], {})
    assert kv_bytes_per_token(stand_in) == kv_bytes_per_token(lm) == 2 * 2 * 1 * 32 * 4  # 2 layers, 1 kv head of 32
    assert row_bytes(stand_in, 57, 3) == row_bytes(lm, 57, 3)


def test_the_paper_models_geometry_gives_their_published_sizes():
    # 7,241,732,096 and 6,910,365,696 parameters with the norms, which the plan leaves out
    mistral, deepseek = KNOWN["mistralai/Mistral-7B-Instruct-v0.2"], KNOWN["deepseek-ai/deepseek-llm-7b-chat"]
    assert mistral.params + 32 * 2 * 4096 + 4096 == 7_241_732_096
    assert deepseek.params + 30 * 2 * 4096 + 4096 == 6_910_365_696
    from tomlab.backends.batching import kv_bytes_per_token

    def kv(geometry: Geometry) -> int:
        return kv_bytes_per_token(planned_lm(geometry, "float32", GPUS["h100"], {}))

    assert kv(deepseek) == 960 * 1024 and kv(mistral) == 256 * 1024


def test_a_geometry_comes_from_a_folder_and_an_unknown_model_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"hidden_size": 64, "num_attention_heads": 4, "num_hidden_layers": 3, '
                                          '"vocab_size": 100, "intermediate_size": 128}')
    assert geometry_of({"name": str(tmp_path)}) == Geometry(3, 64, 4, 4, 16, 128, 100)
    (tmp_path / "config.json").write_text('{"hidden_size": 64}')
    with pytest.raises(ValueError, match="config.json: no 'num_attention_heads'"):
        geometry_of({"name": str(tmp_path)})
    (tmp_path / "config.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="one JSON object"):
        geometry_of({"name": str(tmp_path)})
    with pytest.raises(ValueError, match=r"models.m.name 'nobody/nothing-7b'.*allow_download"):
        geometry_of({"name": "nobody/nothing-7b", "allow_download": False}, "models.m")
    with pytest.raises(ValueError, match="num_hidden_layers"):
        from_config({"hidden_size": 8, "num_attention_heads": 2, "vocab_size": 5, "num_hidden_layers": 0})


def test_rows_per_pass_keep_the_memory_plan_and_a_smaller_budget_means_more_passes():
    from tomlab.backends.memory import row_bytes

    deepseek = KNOWN["deepseek-ai/deepseek-llm-7b-chat"]
    h100 = GPUS["h100"]
    branch = Pass("branch", rows=600, prompt_tokens=300, new_tokens=20, batch=32, branches=8)
    roomy = pass_cost(branch, deepseek, "float32", h100, planned_lm(deepseek, "float32", h100, {"memory_share": 0.25}))
    tight_lm = planned_lm(deepseek, "float32", h100, {"memory_budget_gb": 2})
    tight = pass_cost(branch, deepseek, "float32", h100, tight_lm)
    # DeepSeek's 32 x 8 branch rows would take 66-82 GB of cache in float32 (issue 24): the plan caps them
    assert roomy.rows_per_pass < 32 * 8
    assert roomy.peak_bytes <= 0.25 * (80e9 - deepseek.weight_bytes("float32"))
    assert tight.rows_per_pass * row_bytes(tight_lm, 320, 1) <= 2 * 2**30 < (tight.rows_per_pass + 1) * row_bytes(tight_lm, 320, 1)
    assert tight.passes > roomy.passes and tight.seconds > roomy.seconds
    # one row that alone exceeds the budget still runs, alone
    alone = pass_cost(branch, deepseek, "float32", h100, planned_lm(deepseek, "float32", h100, {"memory_budget_gb": 1e-6}))
    assert alone.rows_per_pass == 1


def test_time_grows_with_the_work_and_falls_with_the_device():
    mistral = KNOWN["mistralai/Mistral-7B-Instruct-v0.2"]
    spec = {"dtype": "float32"}

    def seconds(p: Pass, name: str = "h100") -> float:
        return job_row(JobWork("e", "r", "j", "m", 1, (p,)), mistral, spec, GPUS[name])["projected_s"]

    short, long = Pass("generate", 100, 200, 10, 16), Pass("generate", 100, 200, 40, 16)
    assert seconds(long) > seconds(short)
    assert seconds(Pass("generate", 400, 200, 10, 16)) > 3 * (seconds(short) - GPUS["h100"].job_overhead_s) * 0.9
    assert seconds(short, "a100-80g") > seconds(short, "h100") > seconds(short, "h200") * 0.99
    fast = job_row(JobWork("e", "r", "j", "m", 1, (short,)), mistral, {"dtype": "float32", "matmul_precision": "high"}, GPUS["h100"])
    assert fast["projected_s"] < seconds(short)  # TF32 on a GPU
    scored = job_row(JobWork("e", "r", "j", "m", 1, (Pass("score", 50, 100, 0, 8),)), mistral, spec, GPUS["h100"])
    assert scored["scored_tokens"] == 5000 and scored["decode_tokens"] == 0 and scored["prompts"] == 0


def test_a_served_job_has_its_tokens_and_no_local_cost():
    row = job_row(JobWork("team", "team_play_llm", "x/llm", "api", 0, (Pass("generate", 10, 100, 32, 0),)),
                  None, {"base_url": "http://x"}, GPUS["h100"])
    assert row["tokens"] == 10 * 100 + 10 * 32 and math.isnan(row["projected_s"]) and math.isnan(row["peak_memory_gb"])


def test_auto_dtype_and_the_device_names():
    assert run_dtype({"dtype": "auto"}, GPUS["h100"]) == "bfloat16"
    cpu = Device("cpu", "cpu", 1e11, 1e11, 1e11, 1e10, None, 0.3, 0.5, 1e-3, 1e9, 5.0, "test", native_bf16=False)
    assert run_dtype({"dtype": "auto"}, cpu) == "float32" and run_dtype({"dtype": "bfloat16"}, cpu) == "bfloat16"
    with pytest.raises(ValueError, match="model.dtype 'int8'"):
        run_dtype({"dtype": "int8"}, cpu)
    with pytest.raises(ValueError, match="--device 'v100': unknown device"):
        device("v100")
    with pytest.raises(ValueError, match="pass kind"):
        Pass("decode", 1, 1)


def _plan(rows):
    return pd.DataFrame(rows, columns=["experiment", "rule", "job", "model", "device", "prompts", "tokens",
                                       "peak_memory_gb", "projected_s"])


def _jobs(rows):
    return pd.DataFrame(rows, columns=["rule", "job", "seconds", "prompts", "cache_hits", "model_tokens"])


def test_the_plan_is_set_beside_the_measured_jobs_and_judged_per_experiment():
    plan = _plan([("steering", "steer", "m/attn_out", "m", "cpu", 10, 100, 1.0, 100.0),
                  ("steering", "steer", "m/head_z", "m", "cpu", 10, 100, 1.0, 100.0),
                  ("evaluation", "evaluate_baseline", "m", "m", "cpu", 10, 100, 1.0, 300.0),
                  ("activations", "extract_activations", "m/t", "m", "cpu", 0, 100, 1.0, 20.0),
                  ("debate", "debate_run", "api/arithmetic_cot", "api", "served", 5, 50, np.nan, np.nan),
                  ("bench", "bench_extract", "", "m", "cpu", 0, 10, 1.0, 5.0)])
    jobs = _jobs([("steer", "m/attn_out", 90.0, 10, 0, 100), ("steer", "m/head_z", 95.0, 10, 0, 100),
                  ("evaluate_baseline", "m", 100.0, 10, 0, 100), ("extract_activations", "m/t", 10.0, 0, 0, 100),
                  ("debate_run", "api/arithmetic_cot", 30.0, 5, 0, 50)])
    table = plan_against_measured(plan, jobs)
    assert len(table) == len(plan) and table.loc[table["rule"] == "bench_extract", "measured_s"].isna().all()
    by = plan_by_experiment(table).set_index("experiment")
    assert set(by.index) == {"steering", "evaluation", "activations"}  # served and unmeasured jobs are not judged
    assert by.loc["steering", "verdict"] == f"within {PLAN_BOUND:.0%}" and by.loc["steering", "jobs"] == 2
    assert by.loc["evaluation", "verdict"].startswith("off") and by.loc["evaluation", "planned / measured"] == pytest.approx(3.0)
    assert by.loc["activations", "verdict"].startswith("not judged")
    text = plan_summary(plan_by_experiment(table))
    assert "Of 2 experiment(s) that took over a minute, 1 kept within 30%" in text and "evaluation on m (3.00x)" in text
    assert "nothing to be compared" in plan_summary(plan_by_experiment(plan_against_measured(plan, _jobs([]))))


# --- the command line -------------------------------------------------------------------------------------

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _plan_cli(tmp_path, *args, cwd=REPO):
    import subprocess
    import sys

    out = tmp_path / "plan.parquet"
    proc = subprocess.run([sys.executable, "-m", "tomlab", "plan", *args, "--out", str(out)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    return proc, out


def test_tomlab_plan_plans_the_smoke_runs_model_jobs_on_a_gpu(tmp_path):
    from tomlab.plan import PLAN_COLUMNS

    proc, out = _plan_cli(tmp_path, "--configfile", "config/smoke.yaml", "--device", "h100")
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_parquet(out)
    assert tuple(table.columns) == PLAN_COLUMNS and len(table) > 20
    assert set(table["model"]) == {"random-llama"} and (table["device"] == "h100").all()
    # the Snakefile's config/config.yaml comes first, as Snakemake loads it: its 12 evaluation stories, then smoke's 2
    ev = table[table["rule"] == "evaluate_baseline"].iloc[0]
    assert ev["prompts"] == 2 * 12 - 2  # 2 stories x 12 items, less the prompts asked twice (the cache answers them)
    assert (table["projected_s"] > 0).all() and (table["peak_memory_gb"] > 0).all()
    assert proc.stdout.strip().splitlines()[-1].startswith("projected total: ")
    assert "UserWarning" not in proc.stderr


def test_the_paper_panel_fits_an_80_gb_card_and_is_projected_in_hours(tmp_path, bigtom_csv):
    panel = ('models={"mistral-7b": {"name": "mistralai/Mistral-7B-Instruct-v0.2", "dtype": "float32", "device": "cuda"}, '
             '"deepseek-7b": {"name": "deepseek-ai/deepseek-llm-7b-chat", "dtype": "float32", "device": "cuda"}}')
    proc, out = _plan_cli(tmp_path, "--configfile", "config/bigtom.yaml", "config/paper.yaml", "--device", "a100-80g",
                          "--config", f"bigtom_csv={bigtom_csv}", panel)
    assert proc.returncode == 0, proc.stderr[-2000:]
    table = pd.read_parquet(out)
    assert set(table["model"]) == {"mistral-7b", "deepseek-7b"} and (table["dtype"] == "float32").all()
    assert table["peak_memory_gb"].max() < 80e9 / 2**30  # DeepSeek's branch rows are capped by the memory plan
    steer = table[(table["rule"] == "steer") & (table["model"] == "deepseek-7b")]
    assert (steer["rows_per_pass"] < 32 * 8).all()
    assert "tokens estimated at 4 characters per token" in proc.stdout  # no tokenizer of the paper's models here
    hours = float(proc.stdout.strip().splitlines()[-1].split()[2])
    assert hours == pytest.approx(table["projected_s"].sum() / 3600, rel=0.01) and hours > 1


@pytest.mark.parametrize(("args", "message"), [
    (["--config", "stories"], "--config 'stories': give KEY=VALUE"),
    (["--config", "stories={n: 200.0}"], "stories.n: expected an integer"),
    (["--config", "evaluation={max_storys: 3}"], "max_storys"),
    (["--configfile", "no/such.yaml"], "config file no/such.yaml: not readable"),
    (["--workflow-config", "none"], "give the run's config files"),
    (["--config-json", "[1]"], "--config-json: expected a JSON object"),
])
def test_tomlab_plan_names_a_bad_config(tmp_path, args, message):
    proc, out = _plan_cli(tmp_path, *args, "--device", "h100")
    assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not out.exists()


def test_the_plan_rule_hands_over_the_panel_in_its_order(tmp_path):
    # the benchmarks run on the panel's first model: a config passed with its keys sorted would plan them on another
    import json
    import shlex

    from tests.test_pipeline import _snakemake

    proc = _snakemake(tmp_path, "-n", "-p", "results/plan/plan.parquet", "--configfile", str(REPO / "config/smoke.yaml"),
                      str(REPO / "config/smoke-panel.yaml"))
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-2000:]
    line = next(x for x in proc.stdout.splitlines() if " plan --config-json " in x)
    config = json.loads(shlex.split(line)[shlex.split(line).index("--config-json") + 1])
    assert list(config["models"]) == ["random-llama", "gemma"]
