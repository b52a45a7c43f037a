# The setup summary and the rendered report (Quarto, or the same engines without it).
rule setup_summary:
    input:
        model=rules.prepare_model.output.info,
        raw=rules.raw_stories.output.csv,
        samples=expand(rules.probe_samples.output.samples, task=MAIN_TASK),
        split=expand(rules.split.output.split, task=MAIN_TASK),
    output:
        setup="results/setup.json",
    params:
        config=CONFIG_JSON,
        config_hash=CONFIG_HASH,
    conda:
        ENV
    benchmark:
        "results/benchmarks/setup_summary.tsv"
    log:
        "results/logs/setup_summary.log",
    shell:
        "tomlab setup-summary --config-json {params.config:q} --config-hash {params.config_hash}"
        " --model-info {input.model:q} --raw {input.raw:q} --samples {input.samples:q}"
        " --split {input.split:q} --out {output.setup:q} > {log:q} 2>&1"


# Every result the report shows, by the name its sections use (the cost table's inputs too: once they
# exist, every job they come from has run and written its benchmark file).
REPORT_RESULTS = dict(
    setup=rules.setup_summary.output.setup,
    heads=expand(rules.probe.output.heads, task=MAIN_TASK, site=SITES),
    layers=expand(rules.probe.output.layers, task=MAIN_TASK, site=SITES),
    top=expand(rules.probe.output.top, task=MAIN_TASK, site=SITES),
    lexical=expand(rules.lexical_baseline.output.lexical, task=TASKS),
    probing_accuracy_figures=expand(rules.plot_probing.output.accuracy_png, task=MAIN_TASK, site=SITES),
    probing_selectivity_figures=expand(rules.plot_probing.output.selectivity_png, task=MAIN_TASK, site=SITES),
    baseline=rules.evaluate_baseline.output.table,
    baseline_scored=rules.evaluate_baseline.output.scored,
    served=rules.evaluate_served.output.table if EVAL["served"] else [],
    steering=rules.steering_tables.output.table,
    sweep=rules.alpha_sweep.output.table,
    cross=rules.cross_task.output.correlations,
    letters=rules.mechanism.output.letters,
    free_text=rules.free_text.output.texts,
    steering_figures=rules.plot_steering.output,
    stress_decodability=rules.stress_decodability.output.correct,
    stress_verdicts=rules.stress_verdicts.output.verdicts,
    stress_transfer=rules.stress_transfer.output.stats,
    stress_examples=rules.stress_examples.output.examples,
    stress_minds=rules.stress_minds_probe.output.stats,
    stress_behaviour=rules.stress_behaviour.output.table,
    stress_figures=rules.plot_stress.output,
    team_episodes=rules.team_tables.output.episodes,
    team_summary=rules.team_tables.output.summary,
    team_tom=rules.team_tables.output.tom,
    team_curve=rules.team_train_mappo.output.curve if "mappo" in TEAM_AGENTS else [],
    team_transcripts=expand(
        rules.team_play.output.transcripts, agent=[a for a in TEAM_AGENTS if a in LLM_AGENTS]
    ),
    team_figures=rules.plot_team.output,
    debate_accuracy=expand(rules.debate_tables.output.accuracy, task=DEBATE_TASKS),
    debate_scored=debate_arithmetic(rules.debate_tables.output.scored),
    debate_disagreement=debate_arithmetic(rules.debate_tables.output.disagreement),
    debate_judge_preference=debate_arithmetic(rules.debate_tables.output.judge),
    debate_answers=[
        debate_arithmetic(rules.debate_run.output.answers, m) for m in REPORT_KEYED["debate_answers"]
    ]
    if DEBATE_ARITHMETIC
    else [],
    debate_turns=debate_arithmetic(rules.debate_run.output.turns, "debate"),
    debate_judge=debate_arithmetic(rules.debate_run.output.judge, "debate"),
    debate_transcripts=debate_arithmetic(rules.debate_run.output.transcripts, "debate"),
    debate_figures=rules.plot_debate.output if DEBATE_ARITHMETIC else [],
    bench_probing=rules.bench_probing.output.json,
    bench_extract=rules.bench_extract.output.json,
    bench_steering=rules.bench_steering.output.json,
    bench_generation=rules.bench_generation.output.json,
)


# What every job of the run cost: its benchmark file (wall and CPU time, memory) and, for the rules
# that run a model, the prompts and tokens the command wrote with --usage.
rule cost:
    input:
        **REPORT_RESULTS,
    output:
        jobs="results/cost/jobs.parquet",
        experiments="results/cost/experiments.parquet",
    params:
        benchmarks=BENCHMARKS,
        usage=USAGE,
        experiments=rule_experiments,
        cores=workflow.cores,
    conda:
        ENV
    log:
        "results/logs/cost.log",
    shell:
        "tomlab cost --benchmarks {params.benchmarks:q} --usage-dir {params.usage:q}"
        " --experiments-json {params.experiments:q} --cores {params.cores} --out-jobs {output.jobs:q}"
        " --out-experiments {output.experiments:q} > {log:q} 2>&1"


rule report:
    input:
        **REPORT_RESULTS,
        cost_jobs=rules.cost.output.jobs,
        cost_experiments=rules.cost.output.experiments,
        sources=REPORT_SOURCES,
    output:
        html="results/report/index.html",
        pdf="results/report/index.pdf",
        manifest="results/report/manifest.json",
    params:
        source=lambda wildcards, input: os.path.dirname(input.sources[0]),
        results=lambda wildcards, input: os.path.dirname(input.setup),
        manifest=report_manifest,
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
