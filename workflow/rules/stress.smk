# Stress tests of the belief-probing claims: one experiment per doubt, then one verdict per doubt
# (the constants and helpers are in common.smk).


# The stress tests' own split of the main task's samples (by story unless configured otherwise).
rule stress_split:
    input:
        samples=expand(rules.probe_samples.output.samples, task=MAIN_TASK),
    output:
        split="results/stress/split.parquet",
    params:
        val_fraction=config["split"]["val_fraction"],
        mode=STRESS["split"],
        seed=STRESS["seed"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_split.tsv"
    log:
        "results/logs/stress_split.log",
    shell:
        "tomlab split --samples {input.samples:q} --val-fraction {params.val_fraction}"
        " --mode {params.mode} --seed {params.seed} --out {output.split:q} > {log:q} 2>&1"


rule stress_decodability:
    input:
        acts=activations(MAIN_TASK, STRESS_SITE),
        samples=expand(rules.extract_activations.output.meta, task=MAIN_TASK, allow_missing=True),
        split=rules.stress_split.output.split,
    output:
        correct="results/models/{model}/stress/decodability.parquet",
    params:
        target=STRESS["target"],
        ks=" ".join(map(str, STRESS["decodability"]["ks"])),
        draws=STRESS["decodability"]["draws"],
        seed=STRESS["seed"],
        max_iter=config["probing"]["max_iter"],
    threads: 2
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_decodability/{model}.tsv"
    log:
        "results/logs/{model}/stress_decodability.log",
    shell:
        "tomlab --threads {threads} decodability --activations {input.acts:q} --samples {input.samples:q}"
        " --split {input.split:q} --target {params.target} --ks {params.ks} --draws {params.draws}"
        " --seed {params.seed} --max-iter {params.max_iter} --out {output.correct:q} > {log:q} 2>&1"


# Doubts 2 and 3: the story sets the probes are tested on, unchanged.
rule stress_perturb:
    input:
        raw=rules.raw_stories.output.csv,
    output:
        raw="results/stress/{shift}/raw_stories.csv",
        origin="results/stress/{shift}/origin.parquet",
    wildcard_constraints:
        shift="|".join(PERTURBS),
    params:
        seed=STRESS["seed"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_perturb/{shift}.tsv"
    log:
        "results/logs/stress_perturb_{shift}.log",
    shell:
        "tomlab stress-shift --raw {input.raw:q} --kind {wildcards.shift} --seed {params.seed}"
        " --out-raw {output.raw:q} --out-origin {output.origin:q} > {log:q} 2>&1"


rule stress_generated:
    output:
        raw="results/stress/generated/raw_stories.csv",
    params:
        n=STRESS["generated"]["n"],
        seed=STRESS["generated"]["seed"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_generated.tsv"
    log:
        "results/logs/stress_generated.log",
    shell:
        "tomlab generate-stories --n {params.n} --seed {params.seed} --out {output.raw:q} > {log:q} 2>&1"


rule stress_symbolic:
    input:
        raw=rules.raw_stories.output.csv,
    output:
        raw="results/stress/names@{seed}/raw_stories.csv",
        origin="results/stress/names@{seed}/origin.parquet",
    wildcard_constraints:
        seed=r"\d+",
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_symbolic/{seed}.tsv"
    log:
        "results/logs/stress_symbolic_{seed}.log",
    shell:
        "tomlab stress-shift --raw {input.raw:q} --kind names --seed {wildcards.seed}"
        " --out-raw {output.raw:q} --out-origin {output.origin:q} > {log:q} 2>&1"


rule stress_conditions:
    input:
        csv=shift_raw,
    output:
        conditions=directory("results/stress/{shift}/conditions"),
    wildcard_constraints:
        shift="|".join(SHIFTS + SYMBOLIC) or "generated",
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_conditions/{shift}.tsv"
    log:
        "results/logs/stress_conditions_{shift}.log",
    shell:
        "tomlab bigtom-conditions --csv {input.csv:q} --out {output.conditions:q} > {log:q} 2>&1"


rule stress_samples:
    input:
        unpack(shift_pairing),
        conditions=rules.stress_conditions.output.conditions,
    output:
        samples="results/stress/{shift}/probe_samples.parquet",
    wildcard_constraints:
        shift="|".join(SHIFTS),
    params:
        task=MAIN_TASK,
        statements=config["probing"]["statements"],
        pairing=shift_pairing_args,
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_samples/{shift}.tsv"
    log:
        "results/logs/stress_samples_{shift}.log",
    shell:
        "tomlab stress-samples --conditions {input.conditions:q} --task {params.task} --statements {params.statements}"
        " {params.pairing} --out {output.samples:q} > {log:q} 2>&1"


rule stress_extract:
    input:
        samples=rules.stress_samples.output.samples,
        model=rules.prepare_model.output.info,
    output:
        acts=f"results/models/{{model}}/stress/{{shift}}/activations/{STRESS_SITE}.npy",
        meta="results/models/{model}/stress/{shift}/activations/samples.parquet",
    wildcard_constraints:
        shift="|".join(SHIFTS),
    params:
        model=model_json,
        site=STRESS_SITE,
        batch_size=config["activations"]["batch_size"],
        dtype=config["activations"]["dtype"],
        out_dir=lambda wildcards, output: os.path.dirname(output.acts),
    threads: workflow.cores
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_extract/{model}/{shift}.tsv"
    log:
        log="results/logs/{model}/stress_extract_{shift}.log",
        usage="results/logs/usage/stress_extract/{model}/{shift}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} extract --model-json {params.model:q} --samples {input.samples:q}"
        " --sites {params.site} --batch-size {params.batch_size} --dtype {params.dtype} --out-dir {params.out_dir:q}"
        " > {log.log:q} 2>&1"


rule stress_transfer:
    input:
        acts=activations(MAIN_TASK, STRESS_SITE),
        samples=expand(rules.extract_activations.output.meta, task=MAIN_TASK, allow_missing=True),
        split=rules.stress_split.output.split,
        shift_acts=expand(rules.stress_extract.output.acts, shift=SHIFTS, allow_missing=True),
        shift_samples=expand(rules.stress_extract.output.meta, shift=SHIFTS, allow_missing=True),
    output:
        correct="results/models/{model}/stress/transfer.parquet",
        stats="results/models/{model}/stress/transfer_stats.parquet",
    params:
        shift_acts=lambda wildcards, input: " ".join(f"{s}={shlex.quote(p)}" for s, p in zip(SHIFTS, input.shift_acts)),
        shift_samples=lambda wildcards, input: " ".join(
            f"{s}={shlex.quote(p)}" for s, p in zip(SHIFTS, input.shift_samples)
        ),
        # with the real BigToM file the generated stories are other scenarios: train on them too
        train_other="--reverse generated" if config["stories"]["source"] == "bigtom" else "",
        target=STRESS["target"],
        top_k=STRESS["top_k"],
        seed=STRESS["seed"],
        n_boot=STRESS["n_boot"],
        max_iter=config["probing"]["max_iter"],
    threads: 2
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_transfer/{model}.tsv"
    log:
        "results/logs/{model}/stress_transfer.log",
    shell:
        "tomlab --threads {threads} stress-transfer --activations {input.acts:q} --samples {input.samples:q}"
        " --split {input.split:q} --shift-activations {params.shift_acts} --shift-samples {params.shift_samples}"
        " {params.train_other} --target {params.target} --top-k {params.top_k} --seed {params.seed}"
        " --n-boot {params.n_boot} --max-iter {params.max_iter} --out {output.correct:q} --out-stats {output.stats:q}"
        " > {log:q} 2>&1"


rule stress_examples:
    input:
        raw=rules.raw_stories.output.csv,
        shifted=expand(rules.stress_perturb.output.raw, shift=PERTURBS),
        origin=expand(rules.stress_perturb.output.origin, shift=PERTURBS),
    output:
        examples="results/stress/examples.parquet",
    params:
        shifted=lambda wildcards, input: " ".join(f"{s}={shlex.quote(p)}" for s, p in zip(PERTURBS, input.shifted)),
        origin=lambda wildcards, input: " ".join(f"{s}={shlex.quote(p)}" for s, p in zip(PERTURBS, input.origin)),
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_examples.tsv"
    log:
        "results/logs/stress_examples.log",
    shell:
        "tomlab stress-examples --raw {input.raw:q} --shifted {params.shifted} --origin {params.origin}"
        " --out {output.examples:q} > {log:q} 2>&1"


# Doubt 4: several minds.
rule stress_minds:
    output:
        stories="results/stress/minds/stories.parquet",
        samples="results/stress/minds/probe_samples.parquet",
        eval_items="results/stress/minds/items.parquet",
    params:
        n=STRESS["minds"]["n"],
        seed=STRESS["seed"],
        eval_stories=STRESS["minds"]["eval_stories"],
        protocol=EVAL["protocol"],
        parser=f"--parser {EVAL['parser']}" if EVAL["parser"] else "",
        eval_seed=EVAL["seed"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_minds.tsv"
    log:
        "results/logs/stress_minds.log",
    shell:
        "tomlab stress-minds --n {params.n} --seed {params.seed} --eval-stories {params.eval_stories}"
        " --protocol {params.protocol} {params.parser} --eval-seed {params.eval_seed} --out-stories {output.stories:q}"
        " --out-samples {output.samples:q} --out-items {output.eval_items:q} > {log:q} 2>&1"


use rule stress_extract as stress_minds_extract with:
    input:
        samples=rules.stress_minds.output.samples,
        model=rules.prepare_model.output.info,
    output:
        acts=f"results/models/{{model}}/stress/minds/activations/{STRESS_SITE}.npy",
        meta="results/models/{model}/stress/minds/activations/samples.parquet",
    benchmark:
        "results/benchmarks/stress_minds_extract/{model}.tsv"
    log:
        log="results/logs/{model}/stress_minds_extract.log",
        usage="results/logs/usage/stress_minds_extract/{model}.json",


rule stress_minds_probe:
    input:
        acts=rules.stress_minds_extract.output.acts,
        samples=rules.stress_minds_extract.output.meta,
        transfer=rules.stress_transfer.output.correct,
    output:
        correct="results/models/{model}/stress/minds/probes.parquet",
        stats="results/models/{model}/stress/minds/probe_stats.parquet",
    params:
        val_fraction=config["split"]["val_fraction"],
        top_k=STRESS["top_k"],
        seed=STRESS["seed"],
        n_boot=STRESS["n_boot"],
        max_iter=config["probing"]["max_iter"],
    threads: 2
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_minds_probe/{model}.tsv"
    log:
        "results/logs/{model}/stress_minds_probe.log",
    shell:
        "tomlab --threads {threads} stress-minds-probe --activations {input.acts:q} --samples {input.samples:q}"
        " --transfer {input.transfer:q} --val-fraction {params.val_fraction} --top-k {params.top_k} --seed {params.seed}"
        " --n-boot {params.n_boot} --max-iter {params.max_iter} --out {output.correct:q} --out-stats {output.stats:q}"
        " > {log:q} 2>&1"


# Doubts 3 and 5 in behaviour: answers on the perturbed, renamed and several-minds stories, plain and steered.
rule stress_items:
    input:
        raw=rules.raw_stories.output.csv,
        conditions=rules.bigtom_conditions.output.conditions,
        sets=expand(rules.stress_conditions.output.conditions, shift=BEHAVIOUR_SETS),
        origins=[origin_of(s) for s in BEHAVIOUR_SETS],
        minds=rules.stress_minds.output.eval_items,
    output:
        eval_items="results/stress/behaviour/items.parquet",
    params:
        sets=lambda wildcards, input: " ".join(f"{s}={shlex.quote(p)}" for s, p in zip(BEHAVIOUR_SETS, input.sets)),
        origins=lambda wildcards, input: " ".join(
            f"{s}={shlex.quote(p)}" for s, p in zip(BEHAVIOUR_SETS, input.origins)
        ),
        eval_fraction=config["split"]["eval_fraction"],
        max_stories=STRESS["behaviour"]["max_stories"],
        protocol=EVAL["protocol"],
        parser=f"--parser {EVAL['parser']}" if EVAL["parser"] else "",
        seed=EVAL["seed"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_items.tsv"
    log:
        "results/logs/stress_items.log",
    shell:
        "tomlab stress-items --raw {input.raw:q} --conditions {input.conditions:q} --eval-fraction {params.eval_fraction}"
        " --max-stories {params.max_stories} --set {params.sets} --origin {params.origins} --minds-items {input.minds:q}"
        " --protocol {params.protocol} {params.parser} --seed {params.seed} --out {output.eval_items:q} > {log:q} 2>&1"


rule stress_behaviour:
    input:
        eval_items=rules.stress_items.output.eval_items,
        model=rules.prepare_model.output.info,
        directions=expand(rules.steering_directions.output.directions, task=MAIN_TASK, site=STEER["site"], allow_missing=True),
        acts=activations(MAIN_TASK, STEER["site"]),
    output:
        scored="results/models/{model}/stress/behaviour/scored.parquet",
        table="results/models/{model}/stress/behaviour/accuracy.parquet",
    params:
        prefix=SHARED_PREFIX,
        model=model_json,
        chat=CHAT,
        batch_size=EVAL["batch_size"],
        max_new_tokens=EVAL["max_new_tokens"],
        modes=" ".join(EVAL["modes"]),
        n_boot=STRESS["n_boot"],
        seed=STRESS["seed"],
        site=STEER["site"],
        kind=slug(STRESS["behaviour"]["direction"]),
        alpha=STEER["alpha"],
        cache=COMPLETION_CACHE,
    threads: workflow.cores
    resources:
        gpu=model_gpus,
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_behaviour/{model}.tsv"
    log:
        log="results/logs/{model}/stress_behaviour.log",
        usage="results/logs/usage/stress_behaviour/{model}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} stress-behaviour {params.prefix} --model-json {params.model:q} --items {input.eval_items:q}"
        " {params.chat} --batch-size {params.batch_size} --max-new-tokens {params.max_new_tokens} --modes {params.modes}"
        " --n-boot {params.n_boot} --seed {params.seed} --directions {input.directions:q} --activations {input.acts:q}"
        " --site {params.site} --kind {params.kind} --alpha {params.alpha} --completion-cache {params.cache:q}"
        " --out {output.scored:q} --out-table {output.table:q} > {log.log:q} 2>&1"


rule stress_verdicts:
    input:
        decodability=rules.stress_decodability.output.correct,
        transfer_stats=rules.stress_transfer.output.stats,
        minds_stats=rules.stress_minds_probe.output.stats,
        behaviour=rules.stress_behaviour.output.scored,
    output:
        verdicts="results/models/{model}/stress/verdicts.parquet",
    params:
        few=STRESS["decodability"]["few"],
        n_boot=STRESS["n_boot"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/stress_verdicts/{model}.tsv"
    log:
        "results/logs/{model}/stress_verdicts.log",
    shell:
        "tomlab stress-verdicts --decodability {input.decodability:q} --transfer-stats {input.transfer_stats:q}"
        " --minds-stats {input.minds_stats:q} --behaviour {input.behaviour:q}"
        " --few {params.few} --n-boot {params.n_boot}"
        " --out {output.verdicts:q} > {log:q} 2>&1"


rule plot_stress:
    input:
        decodability=rules.stress_decodability.output.correct,
        transfer=rules.stress_transfer.output.correct,
        transfer_stats=rules.stress_transfer.output.stats,
        minds=rules.stress_minds_probe.output.correct,
    output:
        decodability_png="results/models/{model}/figures/stress_decodability.png",
        decodability_svg="results/models/{model}/figures/stress_decodability.svg",
        transfer_png="results/models/{model}/figures/stress_transfer.png",
        transfer_svg="results/models/{model}/figures/stress_transfer.svg",
        overlap_png="results/models/{model}/figures/stress_overlap.png",
        overlap_svg="results/models/{model}/figures/stress_overlap.svg",
        minds_png="results/models/{model}/figures/stress_minds.png",
        minds_svg="results/models/{model}/figures/stress_minds.svg",
        maps_png="results/models/{model}/figures/stress_maps.png",
        maps_svg="results/models/{model}/figures/stress_maps.svg",
    params:
        stem=lambda wildcards, output: output.decodability_png.removesuffix(".png"),
        transfer=lambda wildcards, output: output.transfer_png.removesuffix(".png"),
        overlap=lambda wildcards, output: output.overlap_png.removesuffix(".png"),
        minds=lambda wildcards, output: output.minds_png.removesuffix(".png"),
        maps=lambda wildcards, output: output.maps_png.removesuffix(".png"),
        top_k=STRESS["top_k"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/plot_stress/{model}.tsv"
    log:
        "results/logs/{model}/plot_stress.log",
    shell:
        "tomlab plot-stress --decodability {input.decodability:q} --transfer {input.transfer:q}"
        " --transfer-stats {input.transfer_stats:q} --top-k {params.top_k} --out-decodability {params.stem:q}"
        " --out-transfer {params.transfer:q} --out-overlap {params.overlap:q} --minds {input.minds:q}"
        " --out-minds {params.minds:q} --out-maps {params.maps:q} > {log:q} 2>&1"
