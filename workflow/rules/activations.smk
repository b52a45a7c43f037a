# Per-head activations at the last token, for every configured capture site, in one pass:
# (samples, layers, heads, head_dim) per site in activations.dtype, and the samples' metadata (with token counts).
rule extract_activations:
    input:
        samples=rules.probe_samples.output.samples,
        model=rules.prepare_model.output.info,
    output:
        acts=expand("results/models/{{model}}/activations/{{task}}/{site}.npy", site=SITES),
        meta="results/models/{model}/activations/{task}/samples.parquet",
    wildcard_constraints:
        task="|".join(TASKS),
    params:
        model=model_json,
        sites=" ".join(SITES),
        batch_size=config["activations"]["batch_size"],
        dtype=config["activations"]["dtype"],
        out_dir=lambda wildcards, output: os.path.dirname(output.acts[0]),
    threads: workflow.cores
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/extract_activations/{model}/{task}.tsv"
    log:
        log="results/logs/{model}/extract_activations_{task}.log",
        usage="results/logs/usage/extract_activations/{model}/{task}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} extract --model-json {params.model:q} --samples {input.samples:q}"
        " --sites {params.sites} --batch-size {params.batch_size} --dtype {params.dtype} --out-dir {params.out_dir:q} > {log.log:q} 2>&1"
