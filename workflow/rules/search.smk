# Adaptive search beside a method's grid (methods.<name>.search, search/plan.py): rounds of runs,
# each round's settings proposed by Optuna's TPE from the scores of the rounds before. A round is
# a checkpoint: its trials' runs enter the DAG once it has written them, as normal runs (rule
# integrate, scored one per job by metrics_search, in the tables like every run). Then
# tables/search.tsv puts the grid and the search under one fixed score (search/table.py).


def search_blocks():
    """[(dataset, method)] of every search: each dataset x searched method it runs."""
    return [
        (d, m) for d in config["datasets"] for m in dataset_methods(d) if m in SEARCH
    ]


def round_file(dataset, method, round_no):
    return f"{OUT}/search/{dataset}/{method}/round{round_no}.json"


def round_trial_files(path, name):
    """The ``name`` files (run.h5ad, metrics.json) of the trials of one written round file."""
    trials = json.loads(Path(path).read_text())["trials"]
    return [str(Path(run).with_name(name)) for t in trials for run in t["runs"]]


def search_trial_files(name, blocks=None, rounds=None):
    """The ``name`` files of the search trials of ``blocks`` (default: all) in rounds 1..``rounds``
    (default: all); asks Snakemake for each round's checkpoint first."""
    files = []
    for dataset, method in blocks or search_blocks():
        last = SEARCH[method].rounds if rounds is None else rounds
        for k in range(1, last + 1):
            done = checkpoints.search_round.get(dataset=dataset, method=method, round=k)
            files += round_trial_files(done.output[0], name)
    return files


def earlier_rounds(wildcards):
    """A round's inputs: the round files before it and the scores of their trials' runs."""
    before = int(wildcards.round) - 1
    block = [(wildcards.dataset, wildcards.method)]
    return [
        round_file(wildcards.dataset, wildcards.method, k) for k in range(1, before + 1)
    ] + search_trial_files("metrics.json", block, before)


def search_plan_json(wildcards):
    return shlex.quote(json.dumps(SEARCH[wildcards.method].to_json(), sort_keys=True))


def search_seeds(wildcards):
    return " ".join(str(s) for s in run_seeds(wildcards.dataset, wildcards.method))


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


def grid_metrics_files(dataset, method):
    """The scores of the grid's fully labelled runs, in the grid's order (the search's twin)."""
    return [
        f"{run_dir(dataset, method, s, seed)}/metrics.json"
        for s, seed in runs_of(dataset, method)
        if SETTING_INDEX[(method, s)][1] == 0
    ]


def search_table_blocks():
    blocks = [
        {
            "grid_metrics": grid_metrics_files(d, m),
            "rounds": [round_file(d, m, k) for k in range(1, SEARCH[m].rounds + 1)],
        }
        for d, m in search_blocks()
    ]
    return shlex.quote(json.dumps(blocks))


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
