# Stress tests of the belief-probing claims: one experiment per doubt, then one verdict per doubt.
STRESS = config["stress"]


rule stress_decodability:
    input:
        acts=activations(MAIN_TASK, SITES[0]),
        samples=expand(rules.extract_activations.output.meta, task=MAIN_TASK),
        split=expand(rules.split.output.split, task=MAIN_TASK),
    output:
        correct="results/stress/decodability.parquet",
    params:
        target=STRESS["decodability"]["target"],
        ks=" ".join(map(str, STRESS["decodability"]["ks"])),
        draws=STRESS["decodability"]["draws"],
        seed=STRESS["seed"],
        max_iter=config["probing"]["max_iter"],
    threads: 2
    conda:
        ENV
    log:
        "results/logs/stress_decodability.log",
    shell:
        "tomlab --threads {threads} decodability --activations {input.acts:q} --samples {input.samples:q}"
        " --split {input.split:q} --target {params.target} --ks {params.ks} --draws {params.draws}"
        " --seed {params.seed} --max-iter {params.max_iter} --out {output.correct:q} > {log:q} 2>&1"


rule stress_verdicts:
    input:
        decodability=rules.stress_decodability.output.correct,
    output:
        verdicts="results/stress/verdicts.parquet",
    params:
        few=STRESS["decodability"]["few"],
        n_boot=STRESS["n_boot"],
    conda:
        ENV
    log:
        "results/logs/stress_verdicts.log",
    shell:
        "tomlab stress-verdicts --decodability {input.decodability:q} --few {params.few} --n-boot {params.n_boot}"
        " --out {output.verdicts:q} > {log:q} 2>&1"


rule plot_stress:
    input:
        decodability=rules.stress_decodability.output.correct,
    output:
        decodability_png="results/figures/stress_decodability.png",
        decodability_svg="results/figures/stress_decodability.svg",
    params:
        stem=lambda wildcards, output: output.decodability_png.removesuffix(".png"),
    conda:
        ENV
    log:
        "results/logs/plot_stress.log",
    shell:
        "tomlab plot-stress --decodability {input.decodability:q} --out-decodability {params.stem:q} > {log:q} 2>&1"
