# Inference-time intervention along probe directions: directions per task and site, Table 1 and 2
# analogues, the alpha sweep, cross-task correlation, mechanism views and free text.
rule steering_directions:
    input:
        acts=lambda wildcards: activations(wildcards.task, wildcards.site, wildcards.model),
        samples=rules.extract_activations.output.meta,
        split=rules.split.output.split,
        heads=rules.probe.output.heads,
    output:
        directions="results/models/{model}/steering/directions/{task}/{site}.npz",
    wildcard_constraints:
        site="|".join(SITES),
        task="|".join(TASKS),
    params:
        kinds=slugs(DIRECTION_KINDS),
        top_k=STEER["top_k"],
        seed=STEER["seed"],
        C_binary=config["probing"]["C_binary"],
        C_joint=config["probing"]["C_joint"],
        max_iter=config["probing"]["max_iter"],
    threads: 2
    conda:
        ENV
    benchmark:
        "results/benchmarks/steering_directions/{model}/{task}_{site}.tsv"
    log:
        "results/logs/{model}/steering_directions_{task}_{site}.log",
    shell:
        "tomlab --threads {threads} directions --activations {input.acts:q} --samples {input.samples:q}"
        " --split {input.split:q} --heads {input.heads:q} --kinds {params.kinds} --top-k {params.top_k}"
        " --seed {params.seed} --C-binary {params.C_binary} --C-joint {params.C_joint}"
        " --max-iter {params.max_iter} --out {output.directions:q} > {log:q} 2>&1"


# Every kind of direction at one site: every task with its own directions (Table 1) and the
# forward-belief directions on the other tasks (Table 2), true- and false-belief items; one scored
# file per kind. All interventions on a task's items branch from one pass over its prompts.
rule steer:
    input:
        eval_items=rules.eval_items.output.eval_items,
        model=rules.prepare_model.output.info,
        directions=expand(rules.steering_directions.output.directions, task=TASKS, allow_missing=True),
        acts=lambda wildcards: [activations(t, wildcards.site, wildcards.model) for t in TASKS],
    output:
        scored=expand("results/models/{{model}}/steering/runs/{{site}}/{kind}.parquet", kind=[slug(k) for k in STEER["directions"]], allow_missing=True),
    wildcard_constraints:
        site="|".join(SITES),
    params:
        model=model_json,
        chat=CHAT,
        batch_size=EVAL["batch_size"],
        max_new_tokens=EVAL["max_new_tokens"],
        modes=" ".join(EVAL["modes"]),
        alpha=STEER["alpha"],
        kinds=slugs(STEER["directions"]),
        pairs=" ".join(STEER_PAIRS),
        directions=lambda wildcards, input: task_args(input.directions),
        acts=lambda wildcards, input: task_args(input.acts),
        cache=COMPLETION_CACHE,
        prefix=SHARED_PREFIX,
    threads: workflow.cores
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/steer/{model}/{site}.tsv"
    log:
        log="results/logs/{model}/steer_{site}.log",
        usage="results/logs/usage/steer/{model}/{site}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} steer --model-json {params.model:q} --items {input.eval_items:q}"
        " {params.chat} {params.prefix} --batch-size {params.batch_size} --max-new-tokens {params.max_new_tokens}"
        " --modes {params.modes} --site {wildcards.site} --kinds {params.kinds} --alpha {params.alpha}"
        " --pairs {params.pairs} --directions {params.directions} --activations {params.acts}"
        " --completion-cache {params.cache:q} --out {output.scored:q} > {log.log:q} 2>&1"


rule steering_tables:
    input:
        baseline=rules.evaluate_baseline.output.scored,
        runs=expand(rules.steer.output.scored, site=SITES, allow_missing=True),
    output:
        table="results/models/{model}/steering/accuracy.parquet",
    params:
        n_boot=EVAL["n_boot"],
        seed=EVAL["seed"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/steering_tables/{model}.tsv"
    log:
        "results/logs/{model}/steering_tables.log",
    shell:
        "tomlab steering-tables --baseline {input.baseline:q} --steered {input.runs:q}"
        " --n-boot {params.n_boot} --seed {params.seed} --out {output.table:q} > {log:q} 2>&1"


rule alpha_sweep:
    input:
        eval_items=rules.eval_items.output.eval_items,
        model=rules.prepare_model.output.info,
        directions=expand(rules.steering_directions.output.directions, task=MAIN_TASK, site=STEER["site"], allow_missing=True),
        acts=activations(MAIN_TASK, STEER["site"]),
    output:
        scored="results/models/{model}/steering/sweep/scored.parquet",
        table="results/models/{model}/steering/sweep/accuracy.parquet",
    params:
        model=model_json,
        chat=CHAT,
        batch_size=EVAL["batch_size"],
        max_new_tokens=EVAL["max_new_tokens"],
        modes=" ".join(EVAL["modes"]),
        n_boot=EVAL["n_boot"],
        seed=EVAL["seed"],
        task=MAIN_TASK,
        site=STEER["site"],
        kinds=slugs(STEER["sweep"]["directions"]),
        alphas=" ".join(str(a) for a in STEER["sweep"]["alphas"]),
        cache=COMPLETION_CACHE,
        prefix=SHARED_PREFIX,
    threads: workflow.cores
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/alpha_sweep/{model}.tsv"
    log:
        log="results/logs/{model}/alpha_sweep.log",
        usage="results/logs/usage/alpha_sweep/{model}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} sweep --model-json {params.model:q} --items {input.eval_items:q}"
        " {params.chat} {params.prefix}"
        " --batch-size {params.batch_size} --max-new-tokens {params.max_new_tokens} --modes {params.modes}"
        " --n-boot {params.n_boot} --seed {params.seed} --directions {input.directions:q}"
        " --activations {input.acts:q} --task {params.task} --site {params.site} --kinds {params.kinds}"
        " --alphas {params.alphas} --completion-cache {params.cache:q} --out {output.scored:q}"
        " --out-table {output.table:q} > {log.log:q} 2>&1"


rule cross_task:
    input:
        heads=expand(rules.probe.output.heads, task=TASKS, site=STEER["site"], allow_missing=True),
    output:
        wide="results/models/{model}/steering/cross_task/heads.parquet",
        correlations="results/models/{model}/steering/cross_task/correlations.parquet",
    params:
        heads=lambda wildcards, input: task_args(input.heads),
        top_k=STEER["top_k"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/cross_task/{model}.tsv"
    log:
        "results/logs/{model}/cross_task.log",
    shell:
        "tomlab cross-task --heads {params.heads} --top-k {params.top_k} --out-wide {output.wide:q}"
        " --out-correlations {output.correlations:q} > {log:q} 2>&1"


rule mechanism:
    input:
        eval_items=rules.eval_items.output.eval_items,
        model=rules.prepare_model.output.info,
        directions=rules.alpha_sweep.input.directions,
        acts=rules.alpha_sweep.input.acts,
    output:
        letters="results/models/{model}/steering/mechanism/letter_probs.parquet",
        projections="results/models/{model}/steering/mechanism/token_projections.parquet",
    params:
        model=model_json,
        chat=CHAT,
        batch_size=EVAL["batch_size"],
        task=MAIN_TASK,
        site=STEER["site"],
        kinds=slugs(STEER["directions"]),
        alpha=STEER["alpha"],
        projection_kind=slug(STEER["mechanism"]["projection_direction"]),
        n_stories=STEER["mechanism"]["n_stories"],
        prefix=SHARED_PREFIX,
    threads: workflow.cores
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/mechanism/{model}.tsv"
    log:
        log="results/logs/{model}/mechanism.log",
        usage="results/logs/usage/mechanism/{model}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} mechanism --model-json {params.model:q} --items {input.eval_items:q}"
        " {params.chat} {params.prefix}"
        " --batch-size {params.batch_size} --directions {input.directions:q} --activations {input.acts:q}"
        " --task {params.task} --site {params.site} --kinds {params.kinds} --alpha {params.alpha}"
        " --projection-kind {params.projection_kind} --n-stories {params.n_stories}"
        " --out-letters {output.letters:q} --out-projections {output.projections:q} > {log.log:q} 2>&1"


rule free_text:
    input:
        eval_items=rules.eval_items.output.eval_items,
        model=rules.prepare_model.output.info,
        directions=rules.alpha_sweep.input.directions,
        acts=rules.alpha_sweep.input.acts,
    output:
        texts="results/models/{model}/steering/free_text.parquet",
    params:
        model=model_json,
        chat=CHAT,
        batch_size=EVAL["batch_size"],
        task=MAIN_TASK,
        site=STEER["site"],
        kinds=slugs(STEER["free_text"]["directions"]),
        alphas=" ".join(str(a) for a in STEER["free_text"]["alphas"]),
        n_stories=STEER["free_text"]["n_stories"],
        max_new_tokens=STEER["free_text"]["max_new_tokens"],
        cache=COMPLETION_CACHE,
        prefix=SHARED_PREFIX,
    threads: workflow.cores
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/free_text/{model}.tsv"
    log:
        log="results/logs/{model}/free_text.log",
        usage="results/logs/usage/free_text/{model}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} free-text --model-json {params.model:q} --items {input.eval_items:q}"
        " {params.chat} {params.prefix}"
        " --batch-size {params.batch_size} --directions {input.directions:q} --activations {input.acts:q}"
        " --task {params.task} --site {params.site} --kinds {params.kinds} --alphas {params.alphas}"
        " --n-stories {params.n_stories} --max-new-tokens {params.max_new_tokens}"
        " --completion-cache {params.cache:q} --out {output.texts:q} > {log.log:q} 2>&1"


rule plot_steering:
    input:
        sweep=rules.alpha_sweep.output.table,
        wide=rules.cross_task.output.wide,
        correlations=rules.cross_task.output.correlations,
        letters=rules.mechanism.output.letters,
        projections=rules.mechanism.output.projections,
    output:
        sweep_png="results/models/{model}/figures/steering_sweep.png",
        sweep_svg="results/models/{model}/figures/steering_sweep.svg",
        cross_png="results/models/{model}/figures/steering_cross_task.png",
        cross_svg="results/models/{model}/figures/steering_cross_task.svg",
        letters_png="results/models/{model}/figures/steering_letter_probs.png",
        letters_svg="results/models/{model}/figures/steering_letter_probs.svg",
        projections_png="results/models/{model}/figures/steering_token_projections.png",
        projections_svg="results/models/{model}/figures/steering_token_projections.svg",
    params:
        sweep=lambda wildcards, output: os.path.splitext(output.sweep_png)[0],
        cross=lambda wildcards, output: os.path.splitext(output.cross_png)[0],
        letters=lambda wildcards, output: os.path.splitext(output.letters_png)[0],
        projections=lambda wildcards, output: os.path.splitext(output.projections_png)[0],
    conda:
        ENV
    benchmark:
        "results/benchmarks/plot_steering/{model}.tsv"
    log:
        "results/logs/{model}/plot_steering.log",
    shell:
        "tomlab plot-steering --sweep {input.sweep:q} --cross-wide {input.wide:q}"
        " --cross-correlations {input.correlations:q} --letters {input.letters:q}"
        " --projections {input.projections:q} --sweep-stem {params.sweep:q} --cross-stem {params.cross:q}"
        " --letters-stem {params.letters:q} --projections-stem {params.projections:q} > {log:q} 2>&1"
