# The setup summary and the rendered report (Quarto, or the same engines without it).
rule setup_summary:
    input:
        model=lambda wildcards: prepared(wildcards.model),  # a served model has no geometry to record
        raw=rules.raw_stories.output.csv,
        samples=expand(rules.probe_samples.output.samples, task=MAIN_TASK),
        split=expand(rules.split.output.split, task=MAIN_TASK),
    output:
        setup="results/models/{model}/setup.json",
    params:
        config=lambda wildcards: model_config(wildcards.model),
        config_hash=lambda wildcards: hashlib.sha256(model_config(wildcards.model).encode()).hexdigest()[:12],
        model_info=lambda wildcards, input: f"--model-info {shlex.quote(input.model[0])}" if input.model else "",
    conda:
        ENV
    benchmark:
        "results/benchmarks/setup_summary/{model}.tsv"
    log:
        "results/logs/{model}/setup_summary.log",
    shell:
        "tomlab setup-summary --config-json {params.config:q} --config-hash {params.config_hash}"
        " --name {wildcards.model:q} {params.model_info} --raw {input.raw:q} --samples {input.samples:q}"
        " --split {input.split:q} --out {output.setup:q} > {log:q} 2>&1"


# Every model the report shows, in panel order (a team or debate model outside the panel last).
REPORT_MODELS = {m: model_results(m) for m in ALL_SPECS}
MODEL_FILES = sorted({p for entries in REPORT_MODELS.values() for p in flat(entries)})


# Tables of every model gathered into one with a `model` column, at the paths a one-model run had.
# name -> (the per-model table, the models that make it)
GATHERED = {
    "eval/baseline/accuracy": (rules.evaluate_baseline.output.table, [m for m in ALL_SPECS if m in EVAL_MODELS + STEER_MODELS]),
    "steering/accuracy": (rules.steering_tables.output.table, STEER_MODELS),
    "stress/verdicts": (rules.stress_verdicts.output.verdicts, STRESS_MODELS),
    "team/summary": (rules.team_tables.output.summary, list(TEAM_SPECS)),
    "team/tom_accuracy": (rules.team_tables.output.tom, list(TEAM_SPECS)),
    **{f"debate/{t}/accuracy": (expand(rules.debate_tables.output.accuracy, task=t, allow_missing=True)[0], list(DEBATE_SPECS))
       for t in DEBATE_TASKS},
}
GATHERED = {name: (pattern, models) for name, (pattern, models) in GATHERED.items() if models}
# team rows of the agents that use no language model are the same in every model's table: kept once
SHARED_ROWS = {"team/summary": "agent_type", "team/tom_accuracy": "agent_type"}


rule gather_models:
    input:
        tables=lambda wildcards: expand(GATHERED[wildcards.table][0], model=GATHERED[wildcards.table][1]),
    output:
        table="results/{table}.parquet",
    wildcard_constraints:
        table="|".join(re.escape(t) for t in GATHERED) or "none",
    params:
        tables=lambda wildcards, input: " ".join(
            f"{m}={shlex.quote(p)}" for m, p in zip(GATHERED[wildcards.table][1], input.tables, strict=True)
        ),
        shared=lambda wildcards: (
            f"--shared-rows {SHARED_ROWS[wildcards.table]}={','.join(TEAM_OTHER_AGENTS)}"
            if wildcards.table in SHARED_ROWS and TEAM_OTHER_AGENTS
            else ""
        ),
    conda:
        ENV
    benchmark:
        "results/benchmarks/gather_models/{table}.tsv"
    log:
        "results/logs/gather_models/{table}.log",
    shell:
        "tomlab gather --table {params.tables} {params.shared} --out {output.table:q} > {log:q} 2>&1"


# The Models table (one row per model: geometry, where it ran, its headline numbers) and the scaling figure.
rule models_overview:
    input:
        MODEL_FILES,
    output:
        overview="results/panel/overview.parquet",
    params:
        manifest=json.dumps({"models": REPORT_MODELS}),  # the models in panel order
        n_boot=EVAL["n_boot"],
        seed=EVAL["seed"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/models_overview.tsv"
    log:
        "results/logs/models_overview.log",
    shell:
        "tomlab models-overview --manifest-json {params.manifest:q} --n-boot {params.n_boot} --seed {params.seed}"
        " --out {output.overview:q} > {log:q} 2>&1"


rule plot_models:
    input:
        overview=rules.models_overview.output.overview,
    output:
        scaling_png="results/figures/models_scaling.png",
        scaling_svg="results/figures/models_scaling.svg",
    params:
        stem=lambda wildcards, output: output.scaling_png.removesuffix(".png"),
    conda:
        ENV
    benchmark:
        "results/benchmarks/plot_models.tsv"
    log:
        "results/logs/plot_models.log",
    shell:
        "tomlab plot-models --overview {input.overview:q} --out {params.stem:q} > {log:q} 2>&1"


# What the report shows once for the whole run (its per-model results are under "models").
REPORT_SHARED = manifest_entries(
    dict(
        setup=expand(rules.setup_summary.output.setup, model=next(iter(ALL_SPECS)))[0],  # the run's headline model
        models_overview=rules.models_overview.output.overview,
        models_figures=figures(rules.plot_models.output),
        gathered=[f"results/{t}.parquet" for t in GATHERED],
        lexical=expand(rules.lexical_baseline.output.lexical, task=TASKS),
        served=rules.evaluate_served.output.table if EVAL["served"] else [],
        stress_examples=rules.stress_examples.output.examples if STRESS_MODELS else [],
        team_curve=rules.team_train_mappo.output.curve if "mappo" in TEAM_AGENTS else [],
        debate_released_scores=rules.debate_released_score.output.scores if RELEASED else [],
        debate_released_debates=rules.debate_released_import.output.debates if RELEASED else [],
        debate_released_moves=rules.debate_released_import.output.moves if RELEASED else [],
        debate_released_problems=rules.debate_released_import.output.problems if RELEASED else [],
        bench_probing=rules.bench_probing.output.json if BENCH_MODEL else [],
        bench_extract=rules.bench_extract.output.json if BENCH_MODEL else [],
        bench_steering=rules.bench_steering.output.json if BENCH_MODEL else [],
        bench_generation=rules.bench_generation.output.json if BENCH_MODEL else [],
    )
)
REPORT_MANIFEST = json.dumps({**REPORT_SHARED, "models": REPORT_MODELS})  # the models in panel order


# What every model job of the run should cost on this machine, projected before it runs (tomlab plan):
# the cost rule sets it beside what the jobs took.
rule plan:
    output:
        plan="results/plan/plan.parquet",
    params:
        config=json.dumps(config),  # in the config's order: the panel's order picks the benchmarks' model
    # the CPU's peaks are measured with every core, as a model job takes them
    threads: workflow.cores
    conda:
        ENV
    benchmark:
        "results/benchmarks/plan.tsv"
    log:
        "results/logs/plan.log",
    shell:
        "tomlab --threads {threads} plan --config-json {params.config:q} --device cpu --out {output.plan:q} > {log:q} 2>&1"


# What every job of the run cost: its benchmark file (wall and CPU time, memory) and, for the rules
# that run a model, the prompts and tokens the command wrote with --usage.
rule cost:
    input:
        shared=flat(REPORT_SHARED),
        models=MODEL_FILES,
        plan=rules.plan.output.plan,
    output:
        jobs="results/cost/jobs.parquet",
        experiments="results/cost/experiments.parquet",
        plan="results/cost/plan.parquet",
    params:
        benchmarks=BENCHMARKS,
        usage=USAGE,
        experiments=rule_experiments,
        models=" ".join(ALL_SPECS),
        per_model=" ".join(sorted(r.name for r in workflow.rules if "{model" in str(r.benchmark or ""))),
    # the cores of the run, recorded with the totals: a resource, not a param (params are compared with the
    # last run's, and a `snakemake -n` with other --cores would plan the cost and the report again)
    resources:
        run_cores=workflow.cores,
    conda:
        ENV
    log:
        "results/logs/cost.log",
    shell:
        "tomlab cost --benchmarks {params.benchmarks:q} --usage-dir {params.usage:q}"
        " --experiments-json {params.experiments:q} --models {params.models} --per-model-rules {params.per_model} --cores {resources.run_cores} --out-jobs {output.jobs:q}"
        " --out-experiments {output.experiments:q} --plan {input.plan:q} --out-plan {output.plan:q} > {log:q} 2>&1"


rule report:
    input:
        shared=flat(REPORT_SHARED),
        models=MODEL_FILES,
        cost_jobs=rules.cost.output.jobs,
        cost_experiments=rules.cost.output.experiments,
        cost_plan=rules.cost.output.plan,
        sources=REPORT_SOURCES,
    output:
        html="results/report/index.html",
        pdf="results/report/index.pdf",
        manifest="results/report/manifest.json",
    params:
        source=lambda wildcards, input: os.path.dirname(input.sources[0]),
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.html)),
        manifest=lambda wildcards, input: json.dumps(
            {**json.loads(REPORT_MANIFEST), "cost_jobs": input.cost_jobs, "cost_experiments": input.cost_experiments,
             "cost_plan": input.cost_plan}
        ),
        engine=config["report"]["engine"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/report.tsv"
    log:
        "results/logs/report.log",
    shell:
        "tomlab report --source {params.source:q} --results {params.results:q} --manifest-json {params.manifest:q}"
        " --save-manifest {output.manifest:q} --html {output.html:q} --pdf {output.pdf:q} --engine {params.engine}"
        " > {log:q} 2>&1"
