# Scoring: one process scores one or more runs and writes one metrics.json per run. Jobs are
# sized to the data (metrics.group, common.smk scoring_jobs): small runs are packed many to a
# job, so the scorer's start-up (~40 s of imports and JIT warm-up) is paid once per job; large
# runs get a job each (rule metrics_run), so a job fits a cluster's limits and a retry rescores
# one run only. Then the tables and the best-setting selection (metrics/select.py).

RUN_SCORED_DATASETS = []
for _d in config["datasets"]:
    _jobs = scoring_jobs(_d)
    if not _jobs and dataset_methods(_d):
        RUN_SCORED_DATASETS.append(_d)
    for _group, _runs in _jobs:
        _metrics_rule(_d, _group, _runs)


if RUN_SCORED_DATASETS:

    rule metrics_run:
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
            dataset="|".join(re.escape(d) for d in RUN_SCORED_DATASETS),
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


rule aggregate:
    input:
        # the search trials' runs are known once their rounds are asked (rules/search.smk)
        metrics=lambda wildcards: all_metrics_files()
        + search_trial_files("metrics.json"),
        runs=lambda wildcards: all_run_files() + search_trial_files("run.h5ad"),
    output:
        runs=f"{OUT}/tables/runs.tsv",
        metrics=f"{OUT}/tables/metrics.tsv",
        scores=f"{OUT}/tables/scores.tsv",
        best=f"{OUT}/tables/best.tsv",
        summary=f"{OUT}/tables/summary.tsv",
        lisi=f"{OUT}/tables/lisi_percell.tsv.gz",
        loss_history=f"{OUT}/tables/loss_history.tsv.gz",
    log:
        f"{OUT}/logs/aggregate.log",
    benchmark:
        f"{OUT}/benchmarks/aggregate.tsv"
    conda:
        "../../envs/metrics.yaml"
    params:
        tables=lambda wildcards, output: os.path.dirname(output.runs),
        selection=SELECTION_JSON,
    shell:
        "python -m metrics.aggregate tables --metrics {input.metrics:q} "
        "--tables {params.tables:q} --selection {params.selection} > {log:q} 2>&1"


if config.get("label_transfer"):

    rule label_transfer:
        # DAVAE's cross-modality task: reference labels transferred by kNN in each run's
        # integrated space (metrics/label_transfer.py)
        input:
            runs=label_transfer_runs(),
        output:
            f"{OUT}/tables/label_transfer.tsv",
        log:
            f"{OUT}/logs/label_transfer.log",
        conda:
            "../../envs/metrics.yaml"
        params:
            reference=shlex.quote(config["label_transfer"]["reference"]),
            k=config["label_transfer"].get("k", 15),
        shell:
            "python -m metrics.label_transfer --runs {input.runs:q} --reference {params.reference} "
            "--k {params.k} --out {output:q} > {log:q} 2>&1"
