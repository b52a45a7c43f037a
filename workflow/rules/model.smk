# Load the model once (converting the embedded GGUF into the cache) and record its geometry.
rule prepare_model:
    output:
        info="results/model/info.json",
    params:
        model=MODEL_JSON,
    resources:
        gpu=GPUS,
    conda:
        ENV
    benchmark:
        "results/benchmarks/prepare_model.tsv"
    log:
        log="results/logs/prepare_model.log",
        usage="results/logs/usage/prepare_model.json",
    shell:
        "tomlab --usage {log.usage:q} prepare-model --model-json {params.model:q} --out {output.info:q} > {log.log:q} 2>&1"
