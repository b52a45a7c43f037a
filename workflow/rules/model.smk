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
    log:
        "results/logs/prepare_model.log",
    shell:
        "tomlab prepare-model --model-json {params.model:q} --out {output.info:q} > {log:q} 2>&1"
