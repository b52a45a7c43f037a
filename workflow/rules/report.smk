# The setup summary and the rendered report (Quarto, or the same engines without it).
rule setup_summary:
    input:
        model=rules.prepare_model.output.info,
        raw=rules.raw_stories.output.csv,
        samples=rules.probe_samples.output.samples,
        split=rules.split.output.split,
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
        heads=expand("results/probing/{site}/heads.parquet", site=SITES),
        layers=expand("results/probing/{site}/layers.parquet", site=SITES),
        top=expand("results/probing/{site}/top_heads.csv", site=SITES),
        lexical=rules.lexical_baseline.output.lexical,
        figures=expand(
            "results/figures/probing_{site}_{kind}.png", site=SITES, kind=["accuracy", "selectivity"]
        ),
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
