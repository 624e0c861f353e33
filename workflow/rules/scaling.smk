# Scaling study: each method with its default setting on subsamples of one dataset; runtime
# and peak RAM from Snakemake's benchmark files, peak GPU memory from the run record. A
# subsample is temporary: deleted once every method has run on it (up to 600k-cell copies).


rule subsample:
    input:
        f"{OUT}/data/{{dataset}}.h5ad",
    output:
        temp(f"{OUT}/data/subsampled/{{dataset}}/n{{n}}.h5ad"),
    log:
        f"{OUT}/logs/subsample/{{dataset}}/n{{n}}.log",
    benchmark:
        f"{OUT}/benchmarks/subsample/{{dataset}}/n{{n}}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=subsample_mem_mb,
        runtime=subsample_runtime,
    params:
        seed=SCALING.get("seed", 0),
    shell:
        "python -m datasets subsample --data {input:q} --n {wildcards.n} --seed {params.seed} "
        "--out {output:q} > {log:q} 2>&1"


rule integrate_scaling:
    input:
        data=f"{OUT}/data/subsampled/{{dataset}}/n{{n}}.h5ad",
        code=method_code,
    output:
        run=f"{OUT}/scaling/{{dataset}}/{{method}}/n{{n}}/run.h5ad",
    log:
        f"{OUT}/logs/scaling/{{dataset}}/{{method}}/n{{n}}.log",
    benchmark:
        f"{OUT}/benchmarks/scaling/{{dataset}}/{{method}}/n{{n}}.tsv"
    conda:
        method_env
    threads: config["threads"]
    resources:
        gpu=gpu_request,
        gpu_model=gpu_model_request,
        mem_mb=scaling_mem_mb,
        runtime=scaling_runtime,
        attempt=attempt_number,
        attempts=attempts_total,
        run_time_limit_s=RUN_TIME_LIMIT_S,
    params:
        json=scaling_params,
        device=config["device"],
        seed=SCALING.get("seed", 0),
        max_mem=MAX_MEM_FLAG,
        cache=f"{OUT}/cache",
        external=external_flag,
    shell:
        "BENCH_CACHE_DIR={params.cache:q} python -m methods run --data {input.data:q} --out {output.run:q} "
        "--method {wildcards.method} --setting default --params {params.json} --seed {params.seed} "
        "--device {params.device} --threads {threads} {params.max_mem} "
        + RUN_JOB_FLAGS
        + " {params.external} > {log:q} 2>&1"


rule scaling_table:
    input:
        runs=scaling_runs(),
    output:
        f"{OUT}/tables/scaling.tsv",
    log:
        f"{OUT}/logs/scaling_table.log",
    conda:
        "../../envs/metrics.yaml"
    params:
        benchmarks=f"{OUT}/benchmarks/scaling",
        dataset=SCALING.get("dataset", ""),
    shell:
        "python -m metrics.aggregate scaling --runs {input.runs:q} --benchmarks-root {params.benchmarks:q} "
        "--dataset {params.dataset:q} --out {output:q} > {log:q} 2>&1"
