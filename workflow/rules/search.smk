# Adaptive search beside a method's grid (methods.<name>.search, search/plan.py): rounds of runs,
# each round's settings proposed by Optuna's TPE from the scores of the rounds before. A round is
# a checkpoint: its trials' runs enter the DAG once it has written them, as normal runs (rule
# integrate, scored one per job by metrics_search, in the tables like every run). Then
# tables/search.tsv puts the grid and the search under one fixed score (search/table.py).


checkpoint search_round:
    input:
        earlier_rounds,
    output:
        f"{OUT}/search/{{dataset}}/{{method}}/round{{round}}.json",
    log:
        f"{OUT}/logs/search/{{dataset}}/{{method}}/round{{round}}.log",
    wildcard_constraints:
        round=r"[1-9]\d*",
    conda:
        "../../envs/search.yaml"
    params:
        plan=search_plan_json,
        seeds=search_seeds,
        previous=lambda wildcards: [
            round_file(wildcards.dataset, wildcards.method, k)
            for k in range(1, int(wildcards.round))
        ],
        runs_root=f"{OUT}/runs",
        selection=SELECTION_JSON,
    shell:
        "python -m search ask --plan {params.plan} --round {wildcards.round} "
        "--dataset {wildcards.dataset} --seeds {params.seeds} --runs-root {params.runs_root:q} "
        "--previous {params.previous:q} --selection {params.selection} --out {output:q} > {log:q} 2>&1"


# A trial's run is scored on its own: the packed scoring jobs (rules/metrics.smk) are planned
# before any round is asked.
rule metrics_search:
    input:
        data=f"{OUT}/data/{{dataset}}.h5ad",
        runs=f"{OUT}/runs/{{dataset}}/{{method}}/{{setting}}/seed{{seed}}/run.h5ad",
    output:
        f"{OUT}/runs/{{dataset}}/{{method}}/{{setting}}/seed{{seed}}/metrics.json",
    log:
        f"{OUT}/logs/metrics/{{dataset}}/{{method}}/{{setting}}/seed{{seed}}.log",
    benchmark:
        f"{OUT}/benchmarks/metrics/{{dataset}}/{{method}}/{{setting}}/seed{{seed}}.tsv"
    wildcard_constraints:
        setting=r"search-t\d+__[A-Za-z0-9._+-]+",
    priority: 10
    conda:
        "../../envs/metrics.yaml"
    threads: 1
    resources:
        mem_mb=metrics_resources()[0],
        runtime=metrics_resources()[1],
    params:
        options=metrics_options_json(),
        cache=f"{OUT}/cache",
    shell:
        METRICS_SHELL


if RUN_SCORED_DATASETS:

    ruleorder: metrics_search > metrics_run


rule search_table:
    input:
        grid=[f for d, m in search_blocks() for f in grid_metrics_files(d, m)],
        trials=lambda wildcards: search_trial_files("metrics.json"),
    output:
        f"{OUT}/tables/search.tsv",
    log:
        f"{OUT}/logs/search/table.log",
    conda:
        "../../envs/search.yaml"
    params:
        blocks=search_table_blocks(),
        selection=SELECTION_JSON,
    shell:
        "python -m search table --blocks {params.blocks} --selection {params.selection} "
        "--out {output:q} > {log:q} 2>&1"
