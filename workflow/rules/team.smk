# The bomb-defusal team game (Li et al., EMNLP 2023): MAPPO training, episodes per agent type,
# the score and ToM tables, the figures. The random, planner and MAPPO teams use no language model and are
# played once; the LLM teams once per team model (team.panel, or team.model), under results/models/{model}/.
rule team_train_mappo:
    output:
        policies="results/team/mappo/policies.pt",
        curve="results/team/mappo/learning_curve.parquet",
    params:
        team=TEAM_JSON,
        mappo=json.dumps(TEAM["mappo"], sort_keys=True),
    threads: 1
    conda:
        ENV
    benchmark:
        "results/benchmarks/team_train_mappo.tsv"
    log:
        "results/logs/team_train_mappo.log",
    shell:
        "tomlab --threads {threads} team-train --team-json {params.team:q} --mappo-json {params.mappo:q}"
        " --out-policies {output.policies:q} --out-curve {output.curve:q} > {log:q} 2>&1"


rule team_play:
    input:
        unpack(team_play_inputs),
    output:
        episodes="results/team/{agent}/episodes.parquet",
        tom="results/team/{agent}/tom.parquet",
        transcripts=directory("results/team/{agent}/transcripts"),
    wildcard_constraints:
        agent="|".join(a for a in AGENT_TYPES if a not in LLM_AGENTS),
    params:
        team=TEAM_JSON,
        seeds=TEAM["seeds"],
        extra=team_play_args,
    threads: 1
    conda:
        ENV
    benchmark:
        "results/benchmarks/team_play/{agent}.tsv"
    log:
        log="results/logs/team_play/{agent}.log",
        usage="results/logs/usage/team_play/{agent}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} team-play --agent-type {wildcards.agent} --team-json {params.team:q}"
        " --seeds {params.seeds} {params.extra} --out-episodes {output.episodes:q} --out-tom {output.tom:q}"
        " --transcripts {output.transcripts:q} > {log.log:q} 2>&1"


rule team_play_llm:
    input:
        models=team_llm_models,  # the local weights its agents play (served models need none)
    output:
        episodes="results/models/{model}/team/{agent}/episodes.parquet",
        tom="results/models/{model}/team/{agent}/tom.parquet",
        transcripts=directory("results/models/{model}/team/{agent}/transcripts"),
    wildcard_constraints:
        agent="|".join(LLM_AGENTS),
    params:
        team=TEAM_JSON,
        seeds=TEAM["seeds"],
        model=model_json,
        llm=json.dumps(TEAM_LLM, sort_keys=True),
        agent_models=json.dumps(TEAM_AGENT_MODELS, sort_keys=True),
        batch_size=TEAM["llm"]["batch_size"],
        cache=COMPLETION_CACHE,
    threads: lambda wildcards: team_resources(wildcards)[0]
    resources:
        gpu=lambda wildcards: team_resources(wildcards)[1],
    conda:
        ENV
    benchmark:
        "results/benchmarks/team_play_llm/{model}/{agent}.tsv"
    log:
        log="results/logs/{model}/team_play/{agent}.log",
        usage="results/logs/usage/team_play_llm/{model}/{agent}.json",
    shell:
        "tomlab --threads {threads} --usage {log.usage:q} team-play --agent-type {wildcards.agent} --team-json {params.team:q}"
        " --seeds {params.seeds} --model-json {params.model:q} --llm-json {params.llm:q}"
        " --agent-models-json {params.agent_models:q} --batch-size {params.batch_size} --completion-cache {params.cache:q}"
        " --out-episodes {output.episodes:q} --out-tom {output.tom:q} --transcripts {output.transcripts:q} > {log.log:q} 2>&1"


rule team_tables:
    input:
        episodes=expand(rules.team_play.output.episodes, agent=TEAM_OTHER_AGENTS)
        + expand(rules.team_play_llm.output.episodes, agent=TEAM_LLM_AGENTS, allow_missing=True),
        tom=expand(rules.team_play.output.tom, agent=TEAM_OTHER_AGENTS)
        + expand(rules.team_play_llm.output.tom, agent=TEAM_LLM_AGENTS, allow_missing=True),
    output:
        episodes="results/models/{model}/team/episodes.parquet",
        summary="results/models/{model}/team/summary.parquet",
        tom="results/models/{model}/team/tom_accuracy.parquet",
    params:
        n_boot=TEAM["n_boot"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/team_tables/{model}.tsv"
    log:
        "results/logs/{model}/team_tables.log",
    shell:
        "tomlab team-tables --episodes {input.episodes:q} --tom {input.tom:q} --n-boot {params.n_boot}"
        " --out-episodes {output.episodes:q} --out-summary {output.summary:q} --out-tom {output.tom:q} > {log:q} 2>&1"


rule plot_team:
    input:
        episodes=rules.team_tables.output.episodes,
        curve=rules.team_train_mappo.output.curve if "mappo" in TEAM_AGENTS else [],
    output:
        rounds_png="results/models/{model}/figures/team_rounds.png",
        rounds_svg="results/models/{model}/figures/team_rounds.svg",
        curve_png="results/models/{model}/figures/team_mappo_curve.png",
        curve_svg="results/models/{model}/figures/team_mappo_curve.svg",
    params:
        max_rounds=TEAM["max_rounds"],
        curve=lambda wildcards, input: f"--curve {shlex.quote(input.curve)}" if input.curve else "",
        rounds_stem=lambda wildcards, output: output.rounds_png.removesuffix(".png"),
        curve_stem=lambda wildcards, output: output.curve_png.removesuffix(".png"),
    conda:
        ENV
    benchmark:
        "results/benchmarks/plot_team/{model}.tsv"
    log:
        "results/logs/{model}/plot_team.log",
    shell:
        "tomlab plot-team --episodes {input.episodes:q} {params.curve} --max-rounds {params.max_rounds}"
        " --out-rounds {params.rounds_stem:q} --out-curve {params.curve_stem:q} > {log:q} 2>&1"
