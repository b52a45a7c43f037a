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
    log:
        "results/logs/setup_summary.log",
    shell:
        "tomlab setup-summary --config-json {params.config:q} --config-hash {params.config_hash}"
        " --model-info {input.model:q} --raw {input.raw:q} --samples {input.samples:q}"
        " --split {input.split:q} --out {output.setup:q} > {log:q} 2>&1"


rule report:
    input:
        setup=rules.setup_summary.output.setup,
        heads=expand(rules.probe.output.heads, task=MAIN_TASK, site=SITES),
        layers=expand(rules.probe.output.layers, task=MAIN_TASK, site=SITES),
        top=expand(rules.probe.output.top, task=MAIN_TASK, site=SITES),
        lexical=expand(rules.lexical_baseline.output.lexical, task=TASKS),
        figures=expand(rules.plot_probing.output.accuracy_png, task=MAIN_TASK, site=SITES)
        + expand(rules.plot_probing.output.selectivity_png, task=MAIN_TASK, site=SITES),
        steering=rules.steering_tables.output.table,
        sweep=rules.alpha_sweep.output.table,
        cross=rules.cross_task.output.correlations,
        letters=rules.mechanism.output.letters,
        free_text=rules.free_text.output.texts,
        steering_figures=rules.plot_steering.output,
        team_summary=rules.team_tables.output.summary,
        team_tom=rules.team_tables.output.tom,
        team_figures=rules.plot_team.output,
        debate_tables=expand(rules.debate_tables.output.accuracy, task=DEBATE_TASKS),
        debate_figures=rules.plot_debate.output if "arithmetic" in DEBATE_TASKS else [],
        bench_probing=rules.bench_probing.output.json,
        bench_extract=rules.bench_extract.output.json,
        sources=REPORT_SOURCES,
    output:
        html="results/report/index.html",
        pdf="results/report/index.pdf",
    params:
        source=lambda wildcards, input: os.path.dirname(input.sources[0]),
        results=lambda wildcards, input: os.path.dirname(input.setup),
        engine=config["report"]["engine"],
    conda:
        ENV
    log:
        "results/logs/report.log",
    shell:
        "tomlab report --source {params.source:q} --results {params.results:q} --html {output.html:q}"
        " --pdf {output.pdf:q} --engine {params.engine} > {log:q} 2>&1"
