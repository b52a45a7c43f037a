# Multi-agent debate (Liang et al.) and its single-agent baselines on counter-intuitive arithmetic
# and ambiguous translation: items, one run per task and method, the tables, the figures.

# The translation items' language pair as debate-tasks flags; arithmetic gets none, so a change of pair
# does not rebuild its items.
DEBATE_LANGUAGES = (
    f"--source-language {shlex.quote(DEBATE['translation']['source_language'])}"
    f" --target-language {shlex.quote(DEBATE['translation']['target_language'])}"
)


rule debate_tasks:
    output:
        task_items="results/debate/{task}/items.parquet",
    wildcard_constraints:
        task="arithmetic|translation",
    params:
        args=debate_task_args,
        languages=lambda wildcards: DEBATE_LANGUAGES if wildcards.task == "translation" else "",
    conda:
        ENV
    benchmark:
        "results/benchmarks/debate_tasks/{task}.tsv"
    log:
        "results/logs/debate_tasks/{task}.log",
    shell:
        "tomlab debate-tasks --task {wildcards.task} {params.args} {params.languages}"
        " --out {output.task_items:q} > {log:q} 2>&1"


rule debate_run:
    input:
        task_items=rules.debate_tasks.output.task_items,
        models=debate_prepared,  # the local weights its roles play (a served model needs none)
    output:
        answers="results/models/{model}/debate/{task}/{method}/answers.parquet",
        turns="results/models/{model}/debate/{task}/{method}/turns.parquet",
        judge="results/models/{model}/debate/{task}/{method}/judge.parquet",
        transcripts="results/models/{model}/debate/{task}/{method}/transcripts.jsonl",
    wildcard_constraints:
        task="arithmetic|translation",
        method="direct|cot|self_consistency|self_reflection|debate|debate_forced",
    params:
        models=debate_models_json,
        settings=DEBATE_SETTINGS,
        batch_size=DEBATE["batch_size"],
        cache=COMPLETION_CACHE,
    threads: lambda wildcards: debate_resources(wildcards)[0]
    resources:
        gpu=lambda wildcards: debate_resources(wildcards)[1],
    conda:
        ENV
    benchmark:
        "results/benchmarks/debate_run/{model}/{task}_{method}.tsv"
    log:
        log="results/logs/{model}/debate_run/{task}_{method}.log",
        usage="results/logs/usage/debate_run/{model}/{task}_{method}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} debate-run --task {wildcards.task} --tasks {input.task_items:q}"
        " --method {wildcards.method} --models-json {params.models:q} --debate-json {params.settings:q}"
        " --batch-size {params.batch_size} --completion-cache {params.cache:q} --out {output.answers:q}"
        " --out-turns {output.turns:q} --out-judge {output.judge:q} --transcripts {output.transcripts:q}"
        " > {log.log:q} 2>&1"


rule debate_tables:
    input:
        task_items=rules.debate_tasks.output.task_items,
        answers=expand(rules.debate_run.output.answers, method=DEBATE_METHODS, allow_missing=True),
        turns=expand(rules.debate_run.output.turns, method=DEBATE_METHODS, allow_missing=True),
    output:
        scored="results/models/{model}/debate/{task}/scored.parquet",
        accuracy="results/models/{model}/debate/{task}/accuracy.parquet",
        disagreement="results/models/{model}/debate/{task}/disagreement.parquet",
        judge="results/models/{model}/debate/{task}/judge_preference.parquet",
    wildcard_constraints:
        task="arithmetic|translation",
    params:
        models=debate_models_json,
        n_boot=DEBATE["n_boot"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/debate_tables/{model}/{task}.tsv"
    log:
        "results/logs/{model}/debate_tables/{task}.log",
    shell:
        "tomlab debate-tables --task {wildcards.task} --tasks {input.task_items:q} --answers {input.answers:q}"
        " --turns {input.turns:q} --models-json {params.models:q} --n-boot {params.n_boot}"
        " --out-scored {output.scored:q} --out-accuracy {output.accuracy:q}"
        " --out-disagreement {output.disagreement:q} --out-judge {output.judge:q} > {log:q} 2>&1"


rule plot_debate:
    input:
        accuracy=expand(rules.debate_tables.output.accuracy, task="arithmetic", allow_missing=True),
        disagreement=expand(rules.debate_tables.output.disagreement, task="arithmetic", allow_missing=True),
    output:
        accuracy_png="results/models/{model}/figures/debate_accuracy.png",
        accuracy_svg="results/models/{model}/figures/debate_accuracy.svg",
        disagreement_png="results/models/{model}/figures/debate_disagreement.png",
        disagreement_svg="results/models/{model}/figures/debate_disagreement.svg",
    params:
        accuracy_stem=lambda wildcards, output: output.accuracy_png.removesuffix(".png"),
        disagreement_stem=lambda wildcards, output: output.disagreement_png.removesuffix(".png"),
    conda:
        ENV
    benchmark:
        "results/benchmarks/plot_debate/{model}.tsv"
    log:
        "results/logs/{model}/plot_debate.log",
    shell:
        "tomlab plot-debate --accuracy {input.accuracy:q} --disagreement {input.disagreement:q}"
        " --out-accuracy {params.accuracy_stem:q} --out-disagreement {params.disagreement_stem:q} > {log:q} 2>&1"


# The debate paper's own outputs on the Common MT lexical set, rescored (debate.translation.released):
# every released system's translations scored against the references, MAD's debate records imported.
RELEASED = DEBATE["translation"]["released"] if DEBATE["translation"]["released"]["dir"] else None

if RELEASED:
    for key in ("baseline", "debate"):
        if RELEASED[key] not in RELEASED["systems"]:
            raise ValueError(f"debate.translation.released.{key}: {RELEASED[key]!r} is not one of its systems")

    rule debate_released_import:
        input:
            records=os.path.join(RELEASED["dir"], "MAD_Debate_Process"),
        output:
            sentences="results/debate/released/debates/items.parquet",
            debates="results/debate/released/debates/debates.parquet",
            turns="results/debate/released/debates/turns.parquet",
            judge="results/debate/released/debates/judge.parquet",
            problems="results/debate/released/debates/problems.parquet",
            moves="results/debate/released/debates/moves.parquet",
        params:
            folder=lambda wildcards, output: os.path.dirname(output.sentences),
            n_boot=DEBATE["n_boot"],
        conda:
            ENV
        benchmark:
            "results/benchmarks/debate_released_import.tsv"
        log:
            "results/logs/debate_released_import.log",
        shell:
            "tomlab debate-import --format mad --dir {input.records:q} --n-boot {params.n_boot}"
            " --out {params.folder:q} > {log:q} 2>&1"

    rule debate_released_score:
        input:
            sentences=rules.debate_released_import.output.sentences,
            outputs=expand(os.path.join(RELEASED["dir"], "output", "{system}"), system=RELEASED["systems"]),
        output:
            scores="results/debate/released/scores.parquet",
        params:
            systems=lambda wildcards, input: " ".join(
                f"--system {shlex.quote(name)}={shlex.quote(path)}" for name, path in zip(RELEASED["systems"], input.outputs)
            ),
            baseline=RELEASED["baseline"],
            n_boot=DEBATE["n_boot"],
        conda:
            ENV
        benchmark:
            "results/benchmarks/debate_released_score.tsv"
        log:
            "results/logs/debate_released_score.log",
        shell:
            "tomlab debate-score --items {input.sentences:q} {params.systems} --baseline {params.baseline:q}"
            " --n-boot {params.n_boot} --out {output.scores:q} > {log:q} 2>&1"
