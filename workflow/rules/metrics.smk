# Scoring: one job scores many runs in one process (the JAX/numba warm-up, ~25 s, is paid
# once per job, then a run of a few thousand cells takes about a second) and writes one
# metrics.json per run. `metrics.group: dataset` (default) makes one job per dataset,
# `method` one per dataset x method (more parallel, better for large atlases).
# Then the tables and the best-setting selection (design.md section 6).

for _d in config["datasets"]:
    if config["metrics"]["group"] == "dataset":
        if dataset_methods(_d):
            _metrics_rule(_d, dataset_methods(_d), "all")
    else:
        for _m in dataset_methods(_d):
            _metrics_rule(_d, [_m], _m)


rule aggregate:
    input:
        metrics=all_metrics_files(),
        runs=all_run_files(),
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
        selection=shlex.quote(
            json.dumps({**config["selection"], **config["metrics"]}, sort_keys=True)
        ),
    shell:
        "python -m metrics.aggregate tables --metrics {input.metrics} "
        "--tables {params.tables} --selection {params.selection} > {log} 2>&1"
