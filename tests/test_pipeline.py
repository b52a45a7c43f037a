"""The whole Snakemake DAG on config/smoke.yaml (tiny random model), into a temporary directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(workdir), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1500)


def test_snakemake_lint_is_clean():
    proc = subprocess.run([*SNAKEMAKE, "--lint"], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Lints for" not in proc.stdout + proc.stderr


def test_dry_run_plans_the_default_dag():
    proc = subprocess.run([*SNAKEMAKE, "-n", "--cores", "1", "--forceall"], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for rule in ("raw_stories", "bigtom_conditions", "extract_activations", "probe", "report"):
        assert rule in proc.stdout


def test_the_workflow_profile_loads(tmp_path):
    proc = _snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), "-n")
    assert proc.returncode == 0, proc.stderr[-2000:]
    line = next((x for x in (proc.stdout + proc.stderr).splitlines() if "workflow specific profile" in x), "")
    assert line.startswith("Using workflow specific profile") and "profiles/default" in line


def test_the_slurm_profile_plans_the_paper_run_with_its_gpu_request(tmp_path, bigtom_csv):
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="the slurm extra is not installed")
    proc = _snakemake(tmp_path, "-n", "--profile", str(REPO / "profiles/slurm"), "--configfile",
                      str(REPO / "config/bigtom.yaml"), str(REPO / "config/paper.yaml"), "--config",
                      f"bigtom_csv={bigtom_csv}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    extract = out[out.index("rule extract_activations:"):][:1500]
    assert "gpu=1" in extract  # the resource the slurm executor turns into the job's GPU request


def test_bad_config_names_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("split:\n  mode: by_coin_flip\n")
    proc = _snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), str(bad), "-n")
    assert proc.returncode != 0
    assert "by_coin_flip" in proc.stdout + proc.stderr


def test_a_misspelt_key_is_named_in_a_few_lines(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("probing:\n  C_binnary: 3\n")
    proc = _snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), str(bad), "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "probing.C_binnary (did you mean C_binary?)" in out
    assert len(out.splitlines()) < 40  # not the schema dumped


def test_an_inline_key_is_refused_without_being_printed(tmp_path):
    secret = "sk-never-echo-0123456789"
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"debate:\n  models:\n    judge: {{base_url: 'http://h/v1', api_key: '{secret}'}}\n")
    proc = _snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), str(bad), "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "debate.models.judge: an inline API key is refused" in out
    assert secret not in out


def test_an_alias_bomb_config_is_refused_naming_the_file(tmp_path):
    # 9**9 values once expanded: refused before anything walks the config (unguarded: minutes, gigabytes)
    lines = ["model:", "  random_config:", "    l0: &l0 [" + ", ".join(["x"] * 9) + "]"]
    lines += [f"    l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]" for i in range(1, 9)]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    proc = _snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), str(bomb), "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and f"config file {bomb}: more than 100000 values" in out, out[-3000:]
    assert "model.random_config.l" in out


def test_a_float_where_an_integer_belongs_is_refused_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stories:\n  n: 200.0\n")
    proc = _snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), str(bad), "-n")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "stories.n: expected an integer, got 200.0" in out, out[-3000:]


def test_bigtom_source_without_file_is_a_clear_error(tmp_path):
    proc = _snakemake(tmp_path, "--configfile", str(REPO / "config/smoke.yaml"), str(REPO / "config/bigtom.yaml"), "-n")
    assert proc.returncode != 0
    assert "bigtom_csv" in proc.stdout + proc.stderr


def test_served_config_sends_the_team_the_debate_and_the_evaluation_to_the_server(tmp_path):
    served = "results/models/Llama-3.1-8B-Instruct"  # team.model and debate.models.default: named after the model
    proc = _snakemake(tmp_path, "-n", "-p", f"{served}/team/llm/episodes.parquet",
                      f"{served}/debate/arithmetic/direct/answers.parquet", "results/eval/served/accuracy.parquet",
                      "--configfile", str(REPO / "config/smoke.yaml"), str(REPO / "config/served.yaml"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    plays = [line for line in proc.stdout.splitlines()
             if "team-play" in line or "debate-run" in line or (" evaluate --model-json " in line and "--modes generation " in line)]
    assert len(plays) == 3 and all('"base_url": "http://127.0.0.1:8000/v1"' in line for line in plays)
    served_eval = proc.stdout.split("rule evaluate_served:")[1].split("rule ")[0].split("Job stats")[0]
    assert "prepare_model" not in served_eval
    # neither the served team nor the served debate needs local weights
    for rule in ("team_play_llm", "debate_run"):
        job = proc.stdout.split(f"rule {rule}:")[1].split("rule ")[0]
        assert "info.json" not in job, job


def test_a_finished_cost_job_is_not_planned_again_by_a_dry_run_with_other_cores(tmp_path):
    # every file the cost job needs, as if a run had made them (one time, so none is newer than another)
    smoke, target = ("--configfile", str(REPO / "config/smoke.yaml")), "results/cost/jobs.parquet"
    summary = _snakemake(tmp_path, "-n", "--summary", target, *smoke)
    assert summary.returncode == 0, summary.stderr[-2000:]
    for line in summary.stdout.splitlines()[1:]:
        path = tmp_path / line.split("\t", 1)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("")
        os.utime(path, (1e9, 1e9))
    # the cost job finishes (its metadata recorded) in a run on 2 cores ...
    done = _snakemake(tmp_path, "--touch", "--forcerun", "cost", target, *smoke)
    assert done.returncode == 0, done.stderr[-2000:]
    # ... then one more benchmark file appears, and `snakemake -n` (1 core) plans nothing
    bench = tmp_path / "results/benchmarks/probe/late.tsv"
    bench.parent.mkdir(parents=True, exist_ok=True)
    bench.write_text("s\th:m:s\n1.0\t0:00:01\n")
    plan = subprocess.run([*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", target, *smoke],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    out = plan.stdout + plan.stderr
    assert plan.returncode == 0, out[-2000:]
    assert "Nothing to be done" in out and "Params have changed" not in out, out[-3000:]


@pytest.mark.slow
def test_whole_dag_on_smoke_config(tmp_path):
    # the smoke model ("random-llama", its name alone) beside a gemma3_text model whose heads are wider than hidden / heads
    configs = [str(REPO / "config/smoke.yaml"), str(REPO / "config/smoke-panel.yaml")]
    # and the debate paper's released outputs, rescored (an invented folder in their format)
    from tests.mad_fixture import write_released

    released = tmp_path / "released.yaml"
    released.write_text("debate:\n  translation:\n    released: {dir: %s}\n"
                        % json.dumps(str(write_released(tmp_path / "mad" / "Lexical_Ambiguity"))))
    configs.append(str(released))
    proc = _snakemake(tmp_path, "--configfile", *configs)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    root = tmp_path / "results"
    res = root / "models" / "random-llama"  # the smoke model's own results
    html = (root / "report/index.html").read_text(encoding="utf-8")
    assert "Probing" in html and "data:image/png;base64" in html
    assert "Stress tests" in html and "The decodability curve" in html  # the stress section renders
    verdicts = pd.read_parquet(root / "stress/verdicts.parquet")
    assert len(verdicts) >= 1 and set(verdicts["verdict"]) <= {"supports the claim", "undermines it",
                                                               "inconclusive at this scale"}
    assert (root / "report/index.pdf").read_bytes().startswith(b"%PDF")
    # every doubt gets its verdict; the shifts, the several minds and the behaviour are in their tables
    assert list(verdicts.columns)[0] == "model" and verdicts.groupby("model")["doubt"].nunique().to_dict() == {
        "random-llama": 5, "gemma": 5} and len(verdicts) == 10
    transfer = pd.read_parquet(res / "stress/transfer_stats.parquet")
    assert {"original", "names", "noop", "percept_paraphrase", "percept_implicit", "decoy_told", "decoy_photo",
            "generated", "kept_belief", "decoys"} == set(transfer["shift"])
    assert set(pd.read_parquet(res / "stress/minds/probe_stats.parquet")["group"]) == {
        "first_order", "second_order", "world", "joint", "seer", "unaware", "told"}
    behaviour = pd.read_parquet(res / "stress/behaviour/accuracy.parquet")
    assert {"original", "names@0", "names@1", "minds"} <= set(behaviour["set"]) and behaviour["steered"].notna().all()
    for name in ("decodability", "transfer", "overlap", "minds", "maps"):
        assert (res / f"figures/stress_{name}.svg").stat().st_size > 0
    assert "Several minds" in html and "Token detectors?" in html and "What steering does beyond" in html

    setup = json.loads((res / "setup.json").read_text())
    assert json.loads((root / "models/gemma/setup.json").read_text())["model"]["name"] == "random:gemma3_text"
    wide = np.load(root / "models/gemma/activations/forward_belief/attn_out.npy")
    assert wide.shape[1:] == (2, 4, 12)  # attn_out: 48 wide, cut into 4 equal slices (head_z: 4 x 32)
    assert np.load(root / "models/gemma/activations/forward_belief/head_z.npy").shape[1:] == (2, 4, 32)
    assert setup["model"]["name"] == "random:llama" and setup["data"]["n_stories"] == 24
    meta = pd.read_parquet(res / "activations/forward_belief/samples.parquet")
    acts = np.load(res / "activations/forward_belief/head_z.npy")
    assert acts.shape == (len(meta), 2, 4, 16) and acts.dtype == np.float32
    assert (meta["n_tokens"] > 0).all() and set(meta["joint"]) == {0, 1, 2, 3}
    heads = pd.read_parquet(res / "probing/forward_belief/attn_out/heads.parquet")
    assert set(heads["target"]) == {"oracle", "protagonist", "joint"}
    assert len(heads) == 3 * 2 * 4  # targets x layers x heads of the smoke model
    assert heads["val_acc"].between(0, 1).all()
    for kind in ("accuracy", "selectivity"):
        for ext in ("png", "svg"):
            assert (res / f"figures/probing_forward_belief_head_z_{kind}.{ext}").stat().st_size > 0
    bench = json.loads((root / "bench/probing.json").read_text())
    assert {"speedup", "max_acc_gap"} <= set(bench)
    for task in ("forward_action", "backward_belief"):
        other = pd.read_parquet(res / f"activations/{task}/samples.parquet")
        assert set(other["task"]) == {task} and len(other) == len(meta)

    # Steering: the baseline on 2 stories x 3 tasks x 4 conditions, every direction at both sites,
    # on each task's own directions and the forward-belief ones on the other tasks.
    items = pd.read_parquet(root / "eval/items.parquet")
    assert len(items) == 2 * 3 * 4
    base = pd.read_parquet(res / "eval/baseline/scored.parquet")
    assert {"completion", "parsed", "logp_a", "ll_pred"} <= set(base.columns) and len(base) == len(items)
    acc = pd.read_parquet(res / "steering/accuracy.parquet")
    steered = acc[acc["direction"] != "none"]
    assert set(steered["direction"]) == {"random", "+protagonist", "-oracle", "+tpfo"}
    assert set(steered["site"]) == {"attn_out", "head_z"}
    assert set(zip(steered["source_task"], steered["task"])) == {
        ("forward_belief", "forward_belief"), ("forward_action", "forward_action"),
        ("backward_belief", "backward_belief"), ("forward_belief", "forward_action"),
        ("forward_belief", "backward_belief")}
    assert set(steered["mode"]) == {"generation", "log-likelihood"} and (steered["n"] == 2).all()
    run = pd.read_parquet(res / "steering/runs/head_z/plus_tpfo.parquet")
    assert set(run["alpha"]) == {20.0} and (run["top_k"] == 4).all()
    sweep = pd.read_parquet(res / "steering/sweep/accuracy.parquet")
    assert set(sweep["alpha"]) == {0.0, 20.0} and set(sweep["direction"]) == {"+tpfo", "random"}
    corr = pd.read_parquet(res / "steering/cross_task/correlations.parquet")
    assert len(corr) == 3 * 3  # targets x task pairs
    letters = pd.read_parquet(res / "steering/mechanism/letter_probs.parquet")
    assert letters["p_correct_plain"].between(0, 1).all()
    texts = pd.read_parquet(res / "steering/free_text.parquet")
    assert set(texts["direction"]) == {"none", "+tpfo", "-oracle"} and "Answer:" in texts["prompt"].iloc[0]
    for name in ("sweep", "cross_task", "letter_probs", "token_projections"):
        assert (res / f"figures/steering_{name}.svg").stat().st_size > 0
    assert "Steering" in html and "Forward-belief directions on the other tasks" in html
    assert list((root / "cache/completions").rglob("*.json"))  # the completion cache was used

    # Team game: every agent type on one seeded layout, the tables, the figures, the report section.
    summary = pd.read_parquet(res / "team/summary.parquet")
    assert list(summary["agent_type"]) == ["random", "planner", "mappo", "llm", "llm_belief"]
    gathered = pd.read_parquet(root / "team/summary.parquet")  # the teams without a model once, the LLM ones per model
    assert sorted(zip(gathered["model"], gathered["agent_type"])) == sorted(
        [("", "random"), ("", "planner"), ("", "mappo"), ("random-llama", "llm"), ("random-llama", "llm_belief"),
         ("gemma", "llm"), ("gemma", "llm_belief")])
    episodes = pd.read_parquet(res / "team/episodes.parquet")
    assert len(episodes) == 5 and (episodes["rounds_played"] <= 3).all()
    planner = episodes[episodes["agent_type"] == "planner"].iloc[0]
    assert planner["valid_actions"] == planner["actions"] and planner["score"] >= episodes["score"].max()
    assert (episodes.loc[episodes["agent_type"].isin(["llm", "llm_belief"]), "total_tokens"] > 0).all()
    curve = pd.read_parquet(root / "team/mappo/learning_curve.parquet")
    assert len(curve) > 0 and curve["timestep"].max() <= 200
    # the released conversation (team.prompts: released): the first action follows the initial belief, the first
    # belief update the round-1 observation
    first, second = (json.loads(line) for line in
                     (res / "team/llm_belief/transcripts/seed0.jsonl").read_text().splitlines()[1:3])
    assert first["kind"] == "action" and first["prompt"][0] == {"role": "system",
                                                                 "content": "You are playing a text game with the user."}
    assert "current belief" in first["prompt"][-1]["content"]
    assert second["kind"] == "belief" and second["prompt"][-1]["content"].startswith("Your observation is: Round: 1.")
    for name in ("team_rounds", "team_mappo_curve"):
        assert (res / f"figures/{name}.svg").stat().st_size > 0
    assert "Team game" in html and "CBS planner" in html

    # Debate: every method on both tasks, the tables and figures, the report section.
    assert set(pd.read_parquet(root / "debate/arithmetic/accuracy.parquet")["model"]) == {"random-llama", "gemma"}
    acc = pd.read_parquet(res / "debate/arithmetic/accuracy.parquet")
    assert set(acc["method"]) == {"direct", "cot", "self_consistency", "self_reflection", "debate", "debate_forced",
                                  "debate_affirmative"}
    assert (acc["n"] == 4).all() and acc["accuracy"].between(0, 1).all()
    mt = pd.read_parquet(res / "debate/translation/accuracy.parquet")
    assert {"bleu", "chrf", "contrastive"} <= set(mt.columns) and (mt["n"] == 2).all()
    forced = pd.read_parquet(res / "debate/arithmetic/debate_forced/judge.parquet")
    assert set(forced["mode"]) == {"extractive"}
    dis = pd.read_parquet(res / "debate/arithmetic/disagreement.parquet")
    assert list(dis.columns) == ["round", "disagreement", "debates", "answered"] and (dis["answered"] <= dis["debates"]).all()
    for name in ("debate_accuracy", "debate_disagreement"):
        assert (res / f"figures/{name}.svg").stat().st_size > 0
    assert "Debate" in html and "Counter-intuitive arithmetic" in html

    # Cost: every job's benchmark file, the model rules' usage, the tables and the report's section.
    jobs = pd.read_parquet(root / "cost/jobs.parquet")
    assert {"steer", "debate_run", "team_play", "extract_activations", "stress_behaviour"} <= set(jobs["rule"])
    assert (jobs["seconds"] > 0).all() and jobs["rule"].nunique() >= 40
    model_rules = jobs[jobs["rule"].isin(["steer", "debate_run", "evaluate_baseline"])]
    # a model job either ran the model or had every answer from the completion cache (debate_forced
    # shares the debate's opening turns)
    assert ((model_rules["model_tokens"] > 0) | (model_rules["cache_hits"] > 0)).all()
    assert (model_rules["model_tokens"] > 0).sum() >= len(model_rules) - 4 * 2  # up to 4 cache-only jobs per model
    debates = jobs[jobs["rule"] == "debate_run"]
    assert ((debates["completion_tokens"] > 0) | (debates["cache_hits"] > 0)).all()
    assert set(jobs.loc[jobs["rule"] == "steer", "model"]) == {"random-llama", "gemma"}
    experiments = pd.read_parquet(root / "cost/experiments.parquet")
    assert experiments["experiment"].iloc[-1] == "total" and {"steering", "debate", "stress"} <= set(experiments["experiment"])
    assert experiments["seconds"].iloc[-1] == pytest.approx(jobs["seconds"].sum())
    assert "Cost" in html and "minutes in all" in html
    # the plan, made before the run, beside what each model job did: every planned job ran, and where the
    # completion cache answered nothing, the prompts and tokens it asked are the ones the plan counted
    plan = pd.read_parquet(root / "cost/plan.parquet")
    assert set(plan["model"]) == {"random-llama", "gemma"} and plan["measured_s"].notna().all()
    exact = plan[plan["rule"].isin(["extract_activations", "stress_extract"])]
    assert len(exact) >= 4 and (exact["planned_tokens"] == exact["measured_tokens"]).all()
    fresh = plan[plan["rule"].isin(["evaluate_baseline", "debate_run"]) & (plan["cache_hits"] == 0)]
    assert len(fresh) >= 2 and (fresh["planned_prompts"] >= fresh["measured_prompts"]).all()
    assert "The plan against the run" in html and "projected" in html
    steering_bench = json.loads((root / "bench/steering.json").read_text())
    # the smoke model runs in float32: shared prefixes give the token-by-token path's answers
    assert steering_bench["speedup"] > 0 and steering_bench["identical_answers"] is True
    assert steering_bench["vs_stepwise_rows"] == steering_bench["items"] * steering_bench["interventions"]
    assert steering_bench["vs_stepwise_same_completions"] == steering_bench["vs_stepwise_rows"]
    assert steering_bench["vs_stepwise_max_abs_logp_diff"] < 1e-3
    generation_bench = json.loads((root / "bench/generation.json").read_text())
    assert len(generation_bench["by_batch_size"]) >= 2
    assert {"mfu", "peak_gflops"} <= set(json.loads((root / "bench/extract.json").read_text()))

    # The Models table, the Table 1 analogue, the probing figure, the stress verdicts, the team and the
    # debate tables show both models.
    overview = pd.read_parquet(root / "panel/overview.parquet")
    assert list(dict.fromkeys(overview["model"])) == ["random-llama", "gemma"]
    section = {name: html.split(f'<h1 id="{name}"', 1)[1].split("<h1 id=", 1)[0]
               for name in ("models", "probing", "steering", "stress-tests", "team-game", "debate")}
    models_table = section["models"].split("<table", 1)[1].split("</table>", 1)[0]
    assert "random-llama" in models_table and "gemma" in models_table
    table1 = section["steering"].split("Table 1)</h2>", 1)[1].split("</table>", 1)[0]
    assert "random-llama: FB" in table1 and "gemma: FB" in table1  # one column group per model
    for name in ("stress-tests", "team-game", "debate"):
        tables = "".join(t.split("</table>")[0] for t in section[name].split("<table")[1:])
        assert "random-llama" in tables and "gemma" in tables, name
    # the released outputs: their subsection in the debate section, their verdict in the verdict table
    assert "The paper’s own outputs, rescored" in section["debate"] or "The paper's own outputs, rescored" in section["debate"]
    from html import unescape  # text from data reaches the HTML escaped (an apostrophe as &#39;)

    assert "29.15" in section["debate"] and "MAD’s released outputs" in unescape(section["stress-tests"]).replace("'", "’")
    # the probing figure: one image per chunk, with one panel per model
    import base64
    from io import BytesIO

    from PIL import Image

    first = section["probing"].split("data:image/png;base64,", 1)[1].split('"', 1)[0]
    shown = Image.open(BytesIO(base64.b64decode(first)))
    heights = [Image.open(root / f"models/{m}/figures/probing_forward_belief_attn_out_accuracy.png").height
               for m in ("random-llama", "gemma")]
    assert shown.height > sum(heights)
    assert (root / "figures/models_scaling.png").stat().st_size > 0

    # A second run has nothing to do.
    again = _snakemake(tmp_path, "--configfile", *configs)
    assert again.returncode == 0
    assert "Nothing to be done" in again.stdout + again.stderr
    # nor does a dry run as a user types it (no --cores: one core; params must not depend on the cores)
    plan = subprocess.run([*SNAKEMAKE, "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "-n", "--configfile", *configs],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert plan.returncode == 0 and "Nothing to be done" in plan.stdout + plan.stderr, (plan.stdout + plan.stderr)[-3000:]

    # A third model added to the finished panel plans its own jobs and the gathering ones, none of the others.
    third = tmp_path / "third.yaml"
    third.write_text(Path(configs[1]).read_text() + "  gpt2:\n    name: random:gpt2\n    dtype: float32\n"
                     "    device: cpu\n    random_config: {n_embd: 32, n_layer: 2, n_head: 4}\n")
    plan = _snakemake(tmp_path, "-n", "--configfile", configs[0], str(third), *configs[2:])
    assert plan.returncode == 0, plan.stderr[-3000:]
    planned = {v for line in plan.stdout.splitlines() if line.strip().startswith("wildcards:")
               for part in line.split(":", 1)[1].split(",") if part.strip().startswith("model=")
               for v in [part.strip().removeprefix("model=")]}
    assert planned == {"gpt2"}, planned
    assert "rule report:" in plan.stdout and "rule gather_models:" in plan.stdout

    # A reviewer reruns one step: only that step runs.
    acts_mtime = (res / "activations/forward_belief/attn_out.npy").stat().st_mtime_ns
    heads_mtime = (res / "probing/forward_belief/attn_out/heads.parquet").stat().st_mtime_ns
    # (targets before --configfile, which takes several values)
    one = _snakemake(tmp_path, "results/models/random-llama/probing/forward_belief/attn_out/heads.parquet", "--forcerun",
                     "probe", "--configfile", *configs)
    assert one.returncode == 0, one.stderr[-4000:]
    assert (res / "probing/forward_belief/attn_out/heads.parquet").stat().st_mtime_ns > heads_mtime
    assert (res / "activations/forward_belief/attn_out.npy").stat().st_mtime_ns == acts_mtime

    # Rerunning a steering rule takes every completion from the cache.
    run_path = res / "steering/runs/head_z/plus_tpfo.parquet"
    before = pd.read_parquet(run_path)
    again = _snakemake(tmp_path, str(run_path.relative_to(tmp_path)), "--forcerun", "steer", "--configfile", *configs)
    assert again.returncode == 0, again.stderr[-4000:]
    log = (root / "logs/random-llama/steer_head_z.log").read_text()
    assert '"cache_misses": 0' in log and '"cache_hits": 0' not in log
    pd.testing.assert_frame_equal(pd.read_parquet(run_path), before)


def test_bigtom_config_plans_the_dag_on_the_real_file(tmp_path, bigtom_csv):
    proc = _snakemake(tmp_path, "-n", "--configfile", str(REPO / "config/smoke.yaml"), str(REPO / "config/bigtom.yaml"),
                      "--config", f"bigtom_csv={bigtom_csv}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "import-bigtom" in proc.stdout or "raw_stories" in proc.stdout


def test_paper_config_requests_a_gpu(tmp_path):
    proc = _snakemake(tmp_path, "-n", "--configfile", str(REPO / "config/paper.yaml"), "-p")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "mistralai/Mistral-7B-Instruct-v0.2" in proc.stdout
    assert "gpu=1" in proc.stdout
