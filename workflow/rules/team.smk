# The bomb-defusal team game (Li et al., EMNLP 2023): MAPPO training, episodes per agent type,
# the score and ToM tables, the figures.
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
        agent="|".join(AGENT_TYPES),
    params:
        team=TEAM_JSON,
        seeds=TEAM["seeds"],
        extra=team_play_args,
    threads: lambda wildcards: workflow.cores if wildcards.agent in LLM_AGENTS else 1
    resources:
        gpu=lambda wildcards: GPUS if wildcards.agent in LLM_AGENTS else 0,
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


rule team_tables:
    input:
        episodes=expand(rules.team_play.output.episodes, agent=TEAM_AGENTS),
        tom=expand(rules.team_play.output.tom, agent=TEAM_AGENTS),
    output:
        episodes="results/team/episodes.parquet",
        summary="results/team/summary.parquet",
        tom="results/team/tom_accuracy.parquet",
    params:
        n_boot=TEAM["n_boot"],
    conda:
        ENV
    benchmark:
        "results/benchmarks/team_tables.tsv"
    log:
        "results/logs/team_tables.log",
    shell:
        "tomlab team-tables --episodes {input.episodes:q} --tom {input.tom:q} --n-boot {params.n_boot}"
        " --out-episodes {output.episodes:q} --out-summary {output.summary:q} --out-tom {output.tom:q} > {log:q} 2>&1"


rule plot_team:
    input:
        episodes=rules.team_tables.output.episodes,
        curve=rules.team_train_mappo.output.curve if "mappo" in TEAM_AGENTS else [],
    output:
        rounds_png="results/figures/team_rounds.png",
        rounds_svg="results/figures/team_rounds.svg",
        curve_png="results/figures/team_mappo_curve.png",
        curve_svg="results/figures/team_mappo_curve.svg",
    params:
        max_rounds=TEAM["max_rounds"],
        curve=lambda wildcards, input: f"--curve {shlex.quote(input.curve)}" if input.curve else "",
        rounds_stem=lambda wildcards, output: output.rounds_png.removesuffix(".png"),
        curve_stem=lambda wildcards, output: output.curve_png.removesuffix(".png"),
    conda:
        ENV
    benchmark:
        "results/benchmarks/plot_team.tsv"
    log:
        "results/logs/plot_team.log",
    shell:
        "tomlab plot-team --episodes {input.episodes:q} {params.curve} --max-rounds {params.max_rounds}"
        " --out-rounds {params.rounds_stem:q} --out-curve {params.curve_stem:q} > {log:q} 2>&1"
