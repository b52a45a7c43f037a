"""Cost accounting: the model meter, the usage file of `tomlab --usage`, the cost tables built from
Snakemake benchmark files, and the backend's choice of batch size."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tomlab.backends import batching, meter
from tomlab.backends.lm import GenerationConfig, TransformersLM
from tomlab.cli.main import main
from tomlab.report import cost

BENCH_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path, seconds, rss=100.0, cpu=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BENCH_HEADER + f"{seconds}\t0:00:01\t{rss}\t1\t1\t1\t0\t0\t50\t{cpu if cpu is not None else seconds}\n")


def test_meter_counts_inside_its_block_only_and_nests():
    meter.record(prompts=5)  # no active meter: nothing happens
    with meter.metered() as outer:
        meter.record(prompts=2, completion_tokens=10)
        with meter.metered() as inner:
            meter.record(scored_tokens=7)
        meter.record(cache_hits=1)
    meter.record(prompts=100)
    assert outer.as_dict() == {"prompts": 2, "prompt_tokens": 0, "completion_tokens": 10, "cache_hits": 1,
                               "scored_sequences": 0, "scored_tokens": 7}
    assert inner.scored_tokens == 7 and inner.prompts == 0
    with pytest.raises(KeyError, match="unknown meter field"), meter.metered():
        meter.record(tokens=1)


def test_the_backends_report_generation_and_cache_hits(tiny_llama, tmp_path):
    from tomlab.backends.lm import CachedLM

    lm = CachedLM(TransformersLM(tiny_llama, batch_size=2), tmp_path)
    config = GenerationConfig(max_new_tokens=3, chat_template=False)
    with meter.metered() as first:
        out = lm.generate(["a b c", "d e"], config)
    assert first.prompts == 2 and first.cache_hits == 0
    assert first.completion_tokens == sum(c.completion_tokens for c in out) > 0
    assert first.prompt_tokens == sum(c.prompt_tokens for c in out)
    with meter.metered() as again:
        lm.generate(["a b c", "d e"], config)
    assert again.prompts == 0 and again.cache_hits == 2 and again.completion_tokens == 0


def test_usage_flag_writes_what_the_command_asked(tmp_path):
    usage = tmp_path / "usage" / "stories.json"
    assert main(["--usage", str(usage), "generate-stories", "--n", "4", "--out", str(tmp_path / "s.csv")]) == 0
    data = json.loads(usage.read_text())
    assert data["command"] == "generate-stories" and data["seconds"] >= 0
    assert {k: data[k] for k in meter.FIELDS} == dict.fromkeys(meter.FIELDS, 0)


def test_job_costs_join_benchmarks_with_usage_and_drop_unknown_rules(tmp_path):
    bench, usage = tmp_path / "benchmarks", tmp_path / "usage"
    _bench(bench / "steer" / "head_z.tsv", 100.0, rss=512.0, cpu=180.0)
    _bench(bench / "probe" / "forward_belief_attn_out.tsv", 4.0)
    _bench(bench / "report.tsv", 30.0)
    _bench(bench / "gone_rule.tsv", 1000.0)  # a rule the workflow no longer has
    (usage / "steer").mkdir(parents=True)
    (usage / "steer" / "head_z.json").write_text(json.dumps(
        {"command": "steer", "prompts": 20, "prompt_tokens": 1000, "completion_tokens": 400, "scored_tokens": 600}))
    experiments = {"steer": "steering", "probe": "probing", "report": "report"}
    jobs = cost.job_costs(bench, usage, experiments)
    assert list(jobs.columns) == list(cost.JOB_COLUMNS)
    assert set(jobs["rule"]) == {"steer", "probe", "report"}
    steer = jobs.set_index("rule").loc["steer"]
    assert steer["job"] == "head_z" and steer["experiment"] == "steering"
    assert steer["model_tokens"] == 2000 and steer["tokens_per_s"] == pytest.approx(20.0)
    assert steer["completion_tokens_per_s"] == pytest.approx(4.0) and steer["max_rss_mb"] == 512.0
    probe = jobs.set_index("rule").loc["probe"]
    assert probe["prompts"] == 0 and np.isnan(probe["tokens_per_s"])
    table = cost.experiment_costs(jobs)
    total = table.set_index("experiment").loc["total"]
    assert total["seconds"] == pytest.approx(134.0) and total["jobs"] == 3 and total["max_rss_mb"] == 512.0
    assert total["completion_tokens"] == 400
    text = cost.cost_summary(table.assign(cores=2))
    assert "2.2 minutes" in text and "on 2 cores" in text and "within" in text and "steering 75%" in text


def test_bad_benchmark_and_usage_files_are_named(tmp_path):
    bad = tmp_path / "b" / "x.tsv"
    bad.parent.mkdir()
    bad.write_text("not\ta benchmark\n")
    with pytest.raises(ValueError, match="x.tsv"):
        cost.read_benchmark(bad)
    use = tmp_path / "u.json"
    use.write_text("[1, 2]")
    with pytest.raises(ValueError, match="u.json"):
        cost.read_usage(use)


def test_cost_command_writes_both_tables_and_refuses_an_empty_folder(tmp_path):
    bench = tmp_path / "benchmarks"
    _bench(bench / "debate_run" / "arithmetic_cot.tsv", 12.0)
    args = ["cost", "--benchmarks", str(bench), "--usage-dir", str(tmp_path / "none"), "--experiments-json",
            json.dumps({"debate_run": "debate"}), "--cores", "2", "--out-jobs", str(tmp_path / "jobs.parquet"),
            "--out-experiments", str(tmp_path / "exp.parquet")]
    assert main(args) == 0
    exp = pd.read_parquet(tmp_path / "exp.parquet")
    assert exp["experiment"].tolist() == ["debate", "total"] and set(exp["cores"]) == {2}
    with pytest.raises(SystemExit, match="no benchmark file"):
        main([*args[:2], str(tmp_path / "empty"), *args[3:]])


def test_token_costs_per_question_and_episode():
    acc = pd.DataFrame({"method": ["cot", "debate"], "accuracy": [0.5, 0.0], "tokens_per_question": [200.0, 3000.0]})
    episodes = pd.DataFrame({"agent_type": ["llm", "llm", "planner"], "score": [10.0, 20.0, 90.0],
                             "total_tokens": [100, 300, 0]})
    table = cost.token_costs(acc, episodes)
    assert table["tokens per correct answer"].tolist()[:2] == ["400", "no correct answer"]
    assert table["tokens per unit"].tolist()[2:] == ["200 / episode", "no model"]
    assert table["result"].tolist()[2] == "score 15.0"


def test_batch_size_auto_is_capped_and_bounded_by_memory(tiny_llama, monkeypatch):
    assert batching.parse_batch_size("auto") == "auto" and batching.parse_batch_size("12") == 12
    for bad in ("0", "-3", "many", 0):
        with pytest.raises(ValueError, match="positive integer or 'auto'"):
            batching.parse_batch_size(bad)
    assert batching.auto_batch_size(tiny_llama) == batching.CPU_CAP  # a tiny model fits many
    per_token = batching.kv_bytes_per_token(tiny_llama)
    config = tiny_llama.model.config
    kv_heads = getattr(config, "num_key_value_heads", None) or tiny_llama.n_heads
    assert per_token == 2 * tiny_llama.n_layers * kv_heads * tiny_llama.head_dim * 4  # float32
    # with memory for ten sequences only, the batch is ten
    from tomlab.backends import memory

    def free(n_bytes):  # the model's memory plan reads the free memory where it is defined
        for module in (batching, memory):
            monkeypatch.setattr(module, "free_memory_bytes", lambda device: n_bytes)

    free(int(10 * per_token * 2048 / batching.MEMORY_SHARE))
    assert batching.auto_batch_size(tiny_llama) == 10
    free(0)
    assert batching.auto_batch_size(tiny_llama) == 1
    assert batching.resolve_batch_size(tiny_llama, 7) == 7
