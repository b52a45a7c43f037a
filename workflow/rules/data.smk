# Stories: generated from tomlab's own templates, or the real BigToM file; then BigToM's 25 conditions.
if config["stories"]["source"] == "bigtom":

    rule raw_stories:
        input:
            csv=config["bigtom_csv"],
        output:
            csv="results/data/raw_stories.csv",
        conda:
            ENV
        benchmark:
            "results/benchmarks/raw_stories.tsv"
        log:
            "results/logs/raw_stories.log",
        shell:
            "tomlab import-bigtom --csv {input.csv:q} --out {output.csv:q} > {log:q} 2>&1"

else:

    rule raw_stories:
        output:
            csv="results/data/raw_stories.csv",
        params:
            n=config["stories"]["n"],
            seed=config["stories"]["seed"],
        conda:
            ENV
        benchmark:
            "results/benchmarks/raw_stories.tsv"
        log:
            "results/logs/raw_stories.log",
        shell:
            "tomlab generate-stories --n {params.n} --seed {params.seed} --out {output.csv:q} > {log:q} 2>&1"


rule bigtom_conditions:
    input:
        csv=rules.raw_stories.output.csv,
    output:
        conditions=directory("results/data/conditions"),
    conda:
        ENV
    benchmark:
        "results/benchmarks/bigtom_conditions.tsv"
    log:
        "results/logs/bigtom_conditions.log",
    shell:
        "tomlab bigtom-conditions --csv {input.csv:q} --out {output.conditions:q} > {log:q} 2>&1"


# The probing samples of one task (forward_belief, forward_action or backward_belief).
rule probe_samples:
    input:
        conditions=rules.bigtom_conditions.output.conditions,
    output:
        samples="results/data/{task}/probe_samples.parquet",
    wildcard_constraints:
        task="|".join(TASKS),
    params:
        eval_fraction=config["split"]["eval_fraction"],
        statements=config["probing"]["statements"],
        max_stories=(
            f"--max-stories {config['activations']['max_stories']}"
            if config["activations"]["max_stories"]
            else ""
        ),
    conda:
        ENV
    benchmark:
        "results/benchmarks/probe_samples/{task}.tsv"
    log:
        "results/logs/probe_samples_{task}.log",
    shell:
        "tomlab probe-samples --conditions {input.conditions:q} --task {wildcards.task}"
        " --eval-fraction {params.eval_fraction} --statements {params.statements}"
        " {params.max_stories} --out {output.samples:q} > {log:q} 2>&1"


rule split:
    input:
        samples=rules.probe_samples.output.samples,
    output:
        split="results/data/{task}/split.parquet",
    wildcard_constraints:
        task="|".join(TASKS),
    params:
        val_fraction=config["split"]["val_fraction"],
        mode=config["split"]["mode"],
        seed=config["split"]["seed"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/split/{task}.tsv"
    log:
        "results/logs/split_{task}.log",
    shell:
        "tomlab split --samples {input.samples:q} --val-fraction {params.val_fraction}"
        " --mode {params.mode} --seed {params.seed} --out {output.split:q} > {log:q} 2>&1"
