# Load each local panel model once (converting an embedded GGUF into the cache) and record its geometry.
rule prepare_model:
    output:
        info="results/models/{model}/info.json",
    params:
        model=model_json,
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/prepare_model/{model}.tsv"
    log:
        log="results/logs/{model}/prepare_model.log",
        usage="results/logs/usage/prepare_model/{model}.json",
    shell:
        "tomlab --usage {log.usage:q} prepare-model --model-json {params.model:q} --out {output.info:q} > {log.log:q} 2>&1"
