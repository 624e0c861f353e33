# Data stage: simulate or download a raw dataset, then preprocess it (or a file: dataset's own
# file) to the section 3 contract ({out}/data/{dataset}.h5ad). Bad data is recorded as a failed
# dataset there (datasets/failure.py), unless strict.


rule simulate:
    output:
        f"{OUT}/data/raw/simulated/{{dataset}}.h5ad",
    log:
        f"{OUT}/logs/simulate/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/simulate/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=simulate_mem_mb,
        runtime=simulate_runtime,
    params:
        args=simulate_args,
    shell:
        # the line on cells kept is also shown on the console when it is a warning
        "python -m datasets simulate {params.args} --out {output:q} > {log:q} 2>&1; "
        "(grep -h '^warning: ' {log:q} || true) >&2"


rule download:
    output:
        f"{OUT}/data/raw/downloaded/{{dataset}}.h5ad",
    log:
        f"{OUT}/logs/download/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/download/{{dataset}}.tsv"
    retries: 2
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=raw_mem_mb,
        runtime=raw_runtime,
    params:
        name=registry_name,
        registry=REGISTRY_FILE,
        lock=LOCK,
        record=RECORD_FAILURE_FLAG,
    shell:
        "python -m datasets download --name {params.name:q} --registry {params.registry:q} "
        "--lock {params.lock:q} --out {output:q} {params.record} > {log:q} 2>&1"


rule preprocess:
    input:
        raw_file,
    output:
        f"{OUT}/data/{{dataset}}.h5ad",
    log:
        f"{OUT}/logs/preprocess/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/preprocess/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    resources:
        mem_mb=raw_mem_mb,
        runtime=raw_runtime,
    params:
        source=preprocess_source,
        args=preprocess_args,
    shell:
        "python -m datasets preprocess {params.source} --out {output:q} {params.args} > {log:q} 2>&1"
