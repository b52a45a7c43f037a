# Benchmarks (not tests): batched vs reference probing (and the original's 100-iteration joint probe vs
# the converged one), batched vs one-at-a-time extraction (with its FLOP utilisation), shared-prefix vs
# token-by-token steering, and generation throughput against the batch size.
# Each takes every core so that nothing else runs beside it while it is timed. They measure the panel's
# first local model (BENCH_MODEL).
BENCH_JSON = json.dumps(ALL_SPECS.get(BENCH_MODEL), sort_keys=True)
BENCH_GPUS = 0 if BENCH_MODEL is None else PANEL[BENCH_MODEL]["gpu"]


rule bench_probing:
    input:
        acts=activations(MAIN_TASK, SITES[0], BENCH_MODEL),
        samples=expand(rules.extract_activations.output.meta, task=MAIN_TASK, model=BENCH_MODEL),
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
    benchmark:
        "results/benchmarks/bench_probing.tsv"
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
        model=expand(rules.prepare_model.output.info, model=BENCH_MODEL),
    output:
        json="results/bench/extract.json",
    params:
        model=BENCH_JSON,
        sites=" ".join(SITES),
        n_prompts=config["bench"]["extract_prompts"],
        batch_size=config["bench"]["extract_batch_size"],
    threads: workflow.cores
    resources:
        gpu=BENCH_GPUS,
    conda:
        ENV
    benchmark:
        "results/benchmarks/bench_extract.tsv"
    log:
        log="results/logs/bench_extract.log",
        usage="results/logs/usage/bench_extract.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} bench extract --model-json {params.model:q} --samples {input.samples:q}"
        " --sites {params.sites} --n-prompts {params.n_prompts} --batch-size {params.batch_size}"
        " --out {output.json:q} > {log.log:q} 2>&1"


rule bench_steering:
    input:
        eval_items=rules.eval_items.output.eval_items,
        model=expand(rules.prepare_model.output.info, model=BENCH_MODEL),
        directions=expand(rules.alpha_sweep.input.directions, model=BENCH_MODEL),
        acts=activations(MAIN_TASK, STEER["site"], BENCH_MODEL),
    output:
        json="results/bench/steering.json",
    params:
        model=BENCH_JSON,
        chat=CHAT,
        batch_size=EVAL["batch_size"],
        max_new_tokens=EVAL["max_new_tokens"],
        modes=" ".join(EVAL["modes"]),
        task=MAIN_TASK,
        site=STEER["site"],
        kinds=slugs(STEER["sweep"]["directions"]),
        alphas=" ".join(str(a) for a in STEER["sweep"]["alphas"]),
        n_items=config["bench"]["steering_items"],
        float32_items=config["bench"]["float32_items"],
    threads: workflow.cores
    resources:
        gpu=BENCH_GPUS,
    conda:
        ENV
    benchmark:
        "results/benchmarks/bench_steering.tsv"
    log:
        log="results/logs/bench_steering.log",
        usage="results/logs/usage/bench_steering.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} bench steering --model-json {params.model:q}"
        " --items {input.eval_items:q} {params.chat} --batch-size {params.batch_size}"
        " --max-new-tokens {params.max_new_tokens} --modes {params.modes} --directions {input.directions:q}"
        " --activations {input.acts:q} --task {params.task} --site {params.site} --kinds {params.kinds}"
        " --alphas {params.alphas} --n-items {params.n_items} --float32-items {params.float32_items}"
        " --out {output.json:q} > {log.log:q} 2>&1"


rule bench_generation:
    input:
        task_items=expand(rules.debate_tasks.output.task_items, task="arithmetic"),
        model=expand(rules.prepare_model.output.info, model=BENCH_MODEL),
    output:
        json="results/bench/generation.json",
    params:
        model=BENCH_JSON,
        n_prompts=config["bench"]["generation_prompts"],
        batch_sizes=" ".join(str(b) for b in config["bench"]["generation_batch_sizes"]),
        max_new_tokens=config["bench"]["generation_max_new_tokens"],
    threads: workflow.cores
    resources:
        gpu=BENCH_GPUS,
    conda:
        ENV
    benchmark:
        "results/benchmarks/bench_generation.tsv"
    log:
        log="results/logs/bench_generation.log",
        usage="results/logs/usage/bench_generation.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} bench generation --model-json {params.model:q}"
        " --items {input.task_items:q} --n-prompts {params.n_prompts} --batch-sizes {params.batch_sizes}"
        " --max-new-tokens {params.max_new_tokens} --out {output.json:q} > {log.log:q} 2>&1"
