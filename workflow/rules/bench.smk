# Benchmarks (not tests): batched vs reference probing (and the original's 100-iteration joint probe vs
# the converged one), batched vs one-at-a-time extraction.
# Each takes every core so that nothing else runs beside it while it is timed.
rule bench_probing:
    input:
        acts=activations(MAIN_TASK, SITES[0]),
        samples=expand(rules.extract_activations.output.meta, task=MAIN_TASK),
        split=expand(rules.split.output.split, task=MAIN_TASK),
    output:
        json="results/bench/probing.json",
    params:
        target=config["bench"]["probing_target"],
        C=config["probing"]["C_binary"],
        C_joint=config["probing"]["C_joint"],
        max_iter=config["probing"]["max_iter"],
        joint_capped_max_iter=config["bench"]["joint_capped_max_iter"],
        top_k=config["steering"]["top_k"],
    threads: workflow.cores
    conda:
        ENV
    log:
        "results/logs/bench_probing.log",
    shell:
        "tomlab --threads {threads} bench probing --activations {input.acts:q} --samples {input.samples:q}"
        " --split {input.split:q} --target {params.target} --C {params.C} --max-iter {params.max_iter}"
        " --C-joint {params.C_joint} --joint-capped-max-iter {params.joint_capped_max_iter}"
        " --top-k {params.top_k} --out {output.json:q} > {log:q} 2>&1"


rule bench_extract:
    input:
        samples=expand(rules.probe_samples.output.samples, task=MAIN_TASK),
        model=rules.prepare_model.output.info,
    output:
        json="results/bench/extract.json",
    params:
        model=MODEL_JSON,
        sites=" ".join(SITES),
        n_prompts=config["bench"]["extract_prompts"],
        batch_size=config["bench"]["extract_batch_size"],
    threads: workflow.cores
    resources:
        gpu=GPUS,
    conda:
        ENV
    log:
        "results/logs/bench_extract.log",
    shell:
        "tomlab --threads {threads} bench extract --model-json {params.model:q} --samples {input.samples:q}"
        " --sites {params.sites} --n-prompts {params.n_prompts} --batch-size {params.batch_size}"
        " --out {output.json:q} > {log:q} 2>&1"
