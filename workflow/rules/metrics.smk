# Scoring: one job per dataset x method scores all its runs in one process (JIT warm-up of
# numba/JAX is paid once per job, not per run) and writes one metrics.json per run.
# Then the tables and the best-setting selection (design.md section 6).

METRIC_OPTIONS = {
    **config["metrics"].get("options", {}),
    "n_neighbors": config["metrics"]["n_neighbors"],
}


def metrics_options_json():
    return shlex.quote(json.dumps(METRIC_OPTIONS, sort_keys=True))


def _metrics_rule(dataset, method):
    runs = [f"{run_dir(dataset, method, s, seed)}/run.h5ad" for s, seed in runs_of(dataset, method)]
    outs = [r.replace("run.h5ad", "metrics.json") for r in runs]

    rule:
        name:
            f"metrics_{dataset}_{method}".replace("-", "_").replace(".", "_")
        input:
            data=f"{OUT}/data/{dataset}.h5ad",
            runs=runs,
        output:
            outs,
        params:
            options=metrics_options_json(),
        log:
            f"{OUT}/logs/metrics/{dataset}/{method}.log",
        benchmark:
            f"{OUT}/benchmarks/metrics/{dataset}/{method}.tsv"
        threads: 1
        resources:
            mem_mb=mem_mb_attempt,
            runtime=runtime_attempt,
        conda:
            "../../envs/metrics.yaml"
        shell:
            "BENCH_CACHE_DIR={OUT}/cache python -m metrics score --data {input.data} "
            "--runs {input.runs} --out {output} --options {params.options} > {log} 2>&1"


for _d in config["datasets"]:
    for _m in dataset_methods(_d):
        _metrics_rule(_d, _m)


def all_metrics_files():
    return [f.replace("run.h5ad", "metrics.json") for f in all_run_files()]


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
    params:
        out=OUT,
        selection=shlex.quote(json.dumps({**config["selection"], **config["metrics"]}, sort_keys=True)),
    log:
        f"{OUT}/logs/aggregate.log",
    benchmark:
        f"{OUT}/benchmarks/aggregate.tsv"
    conda:
        "../../envs/metrics.yaml"
    shell:
        "python -m metrics.aggregate tables --runs-root {params.out}/runs --metrics {input.metrics} "
        "--tables {params.out}/tables --selection {params.selection} > {log} 2>&1"
