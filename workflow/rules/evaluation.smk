# BigToM two-option evaluation of the plain model on the evaluation split (stories never probed).
rule eval_items:
    input:
        conditions=rules.bigtom_conditions.output.conditions,
    output:
        eval_items="results/eval/items.parquet",
    params:
        eval_fraction=config["split"]["eval_fraction"],
        seed=EVAL["seed"],
        protocol=EVAL["protocol"],
        parser=f"--parser {EVAL['parser']}" if EVAL["parser"] else "",
        max_stories=f"--max-stories {EVAL['max_stories']}" if EVAL["max_stories"] else "",
    conda:
        ENV
    benchmark:
        "results/benchmarks/eval_items.tsv"
    log:
        "results/logs/eval_items.log",
    shell:
        "tomlab eval-items --conditions {input.conditions:q} --eval-fraction {params.eval_fraction}"
        " --seed {params.seed} --protocol {params.protocol} {params.parser} {params.max_stories} --out {output.eval_items:q} > {log:q} 2>&1"


rule evaluate_baseline:
    input:
        eval_items=rules.eval_items.output.eval_items,
        model=lambda wildcards: prepared(wildcards.model),  # a served model needs none
    output:
        scored="results/models/{model}/eval/baseline/scored.parquet",
        table="results/models/{model}/eval/baseline/accuracy.parquet",
    params:
        model=model_json,
        chat=CHAT,
        batch_size=EVAL["batch_size"],
        max_new_tokens=EVAL["max_new_tokens"],
        # a server gives no option log-likelihoods: a served model answers by generation only
        modes=lambda wildcards: "generation" if is_served(ALL_SPECS[wildcards.model]) else " ".join(EVAL["modes"]),
        n_boot=EVAL["n_boot"],
        seed=EVAL["seed"],
        cache=COMPLETION_CACHE,
    threads: model_threads
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/evaluate_baseline/{model}.tsv"
    log:
        log="results/logs/{model}/evaluate_baseline.log",
        usage="results/logs/usage/evaluate_baseline/{model}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} evaluate --model-json {params.model:q} --items {input.eval_items:q}"
        " {params.chat} --batch-size {params.batch_size} --max-new-tokens {params.max_new_tokens}"
        " --modes {params.modes} --n-boot {params.n_boot} --seed {params.seed}"
        " --completion-cache {params.cache:q} --out {output.scored:q} --out-table {output.table:q} > {log.log:q} 2>&1"


rule evaluate_served:
    input:
        eval_items=rules.eval_items.output.eval_items,
    output:
        scored="results/eval/served/scored.parquet",
        table="results/eval/served/accuracy.parquet",
    params:
        model=json.dumps(EVAL["served"] or {}, sort_keys=True),
        chat=CHAT,
        max_new_tokens=EVAL["max_new_tokens"],
        n_boot=EVAL["n_boot"],
        seed=EVAL["seed"],
        cache=COMPLETION_CACHE,
    conda:
        ENV
    benchmark:
        "results/benchmarks/evaluate_served.tsv"
    log:
        log="results/logs/evaluate_served.log",
        usage="results/logs/usage/evaluate_served.json",
    shell:
        "tomlab --usage {log.usage:q} evaluate --model-json {params.model:q} --items {input.eval_items:q} {params.chat}"
        " --max-new-tokens {params.max_new_tokens} --modes generation --n-boot {params.n_boot} --seed {params.seed}"
        " --completion-cache {params.cache:q} --out {output.scored:q} --out-table {output.table:q} > {log.log:q} 2>&1"
