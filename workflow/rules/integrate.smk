# One job per dataset x method x setting x seed. A failing method still writes its run file
# (status=failed, with the error) so the study goes on; `strict: true` makes it fatal. Out of
# memory or time before the last attempt exits non-zero instead, and Snakemake retries the job
# with the next attempt's memory and runtime (methods/attempts.py).


rule integrate:
    input:
        data=f"{OUT}/data/{{dataset}}.h5ad",
        code=method_code,
    output:
        run=f"{OUT}/runs/{{dataset}}/{{method}}/{{setting}}/seed{{seed}}/run.h5ad",
    log:
        f"{OUT}/logs/integrate/{{dataset}}/{{method}}/{{setting}}/seed{{seed}}.log",
    benchmark:
        f"{OUT}/benchmarks/integrate/{{dataset}}/{{method}}/{{setting}}/seed{{seed}}.tsv"
    conda:
        method_env
    threads: config["threads"]
    resources:
        gpu=gpu_request,
        gpu_model=gpu_model_request,
        mem_mb=integrate_mem_mb,
        runtime=integrate_runtime,
        attempt=attempt_number,
        attempts=attempts_total,
        run_time_limit_s=RUN_TIME_LIMIT_S,
    params:
        json=run_params,
        label_missing=run_label_missing,
        device=config["device"],
        strict=STRICT_FLAG,
        max_mem=MAX_MEM_FLAG,
        cache=f"{OUT}/cache",
        external=external_flag,
    shell:
        "BENCH_CACHE_DIR={params.cache:q} python -m methods run --data {input.data:q} --out {output.run:q} "
        "--method {wildcards.method} --setting {wildcards.setting} --params {params.json} "
        "--seed {wildcards.seed} --device {params.device} --threads {threads} "
        "--label-missing {params.label_missing} {params.strict} {params.max_mem} "
        + RUN_JOB_FLAGS
        + " {params.external} > {log:q} 2>&1"
