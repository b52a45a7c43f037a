# Probes per head and per layer (with shuffled-label controls), the lexical baseline, the heatmaps.
rule probe:
    input:
        acts=lambda wildcards: activations(wildcards.task, wildcards.site, wildcards.model),
        samples=rules.extract_activations.output.meta,
        split=rules.split.output.split,
    output:
        heads="results/models/{model}/probing/{task}/{site}/heads.parquet",
        layers="results/models/{model}/probing/{task}/{site}/layers.parquet",
        top="results/models/{model}/probing/{task}/{site}/top_heads.csv",
    wildcard_constraints:
        site="|".join(SITES),
        task="|".join(TASKS),
    params:
        C_binary=config["probing"]["C_binary"],
        C_joint=config["probing"]["C_joint"],
        max_iter=config["probing"]["max_iter"],
        seed=config["probing"]["seed"],
        top_k=config["probing"]["top_k"],
    threads: 2
    conda:
        ENV
    benchmark:
        "results/benchmarks/probe/{model}/{task}_{site}.tsv"
    log:
        "results/logs/{model}/probe_{task}_{site}.log",
    shell:
        "tomlab --threads {threads} probe --activations {input.acts:q} --samples {input.samples:q}"
        " --split {input.split:q} --C-binary {params.C_binary} --C-joint {params.C_joint}"
        " --max-iter {params.max_iter} --seed {params.seed} --top-k {params.top_k}"
        " --out-heads {output.heads:q} --out-layers {output.layers:q} --out-top {output.top:q} > {log:q} 2>&1"


rule lexical_baseline:
    input:
        samples=rules.probe_samples.output.samples,
        split=rules.split.output.split,
    output:
        lexical="results/probing/{task}/lexical.parquet",
    wildcard_constraints:
        task="|".join(TASKS),
    params:
        C_binary=config["probing"]["C_binary"],
        C_joint=config["probing"]["C_joint"],
        max_iter=config["probing"]["max_iter"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/lexical_baseline/{task}.tsv"
    log:
        "results/logs/lexical_baseline_{task}.log",
    shell:
        "tomlab lexical --samples {input.samples:q} --split {input.split:q} --C-binary {params.C_binary}"
        " --C-joint {params.C_joint} --max-iter {params.max_iter} --out {output.lexical:q} > {log:q} 2>&1"


rule plot_probing:
    input:
        heads=rules.probe.output.heads,
    output:
        accuracy_png="results/models/{model}/figures/probing_{task}_{site}_accuracy.png",
        accuracy_svg="results/models/{model}/figures/probing_{task}_{site}_accuracy.svg",
        selectivity_png="results/models/{model}/figures/probing_{task}_{site}_selectivity.png",
        selectivity_svg="results/models/{model}/figures/probing_{task}_{site}_selectivity.svg",
    wildcard_constraints:
        site="|".join(SITES),
        task="|".join(TASKS),
    params:
        accuracy=lambda wildcards, output: os.path.splitext(output.accuracy_png)[0],
        selectivity=lambda wildcards, output: os.path.splitext(output.selectivity_png)[0],
    conda:
        ENV
    benchmark:
        "results/benchmarks/plot_probing/{model}/{task}_{site}.tsv"
    log:
        "results/logs/{model}/plot_probing_{task}_{site}.log",
    shell:
        "tomlab plot-probing --heads {input.heads:q} --site {wildcards.site} --accuracy {params.accuracy:q}"
        " --selectivity {params.selectivity:q} > {log:q} 2>&1"
