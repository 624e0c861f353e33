# Study-level checks on the tables: batch-effect strength of each scored dataset before
# integration (sysVI Fig. 1c; metrics/batch_strength.py) and the seed papers' claims tested
# on scores.tsv / best.tsv (metrics/claims.py).


rule batch_strength:
    input:
        f"{OUT}/data/{{dataset}}.h5ad",
    output:
        f"{OUT}/batch_strength/{{dataset}}.tsv",
    log:
        f"{OUT}/logs/batch_strength/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/batch_strength/{{dataset}}.tsv"
    conda:
        "../../envs/metrics.yaml"
    shell:
        "python -m metrics.batch_strength --data {input:q} --dataset {wildcards.dataset} "
        "--out {output:q} > {log:q} 2>&1"


rule batch_strength_table:
    input:
        # scored datasets only: a scaling-only dataset (methods: []) is not part of the results
        expand(
            f"{OUT}/batch_strength/{{dataset}}.tsv",
            dataset=[d for d in config["datasets"] if dataset_methods(d)],
        ),
    output:
        f"{OUT}/tables/batch_strength.tsv",
    log:
        f"{OUT}/logs/batch_strength_table.log",
    conda:
        "../../envs/metrics.yaml"
    shell:
        "python -m metrics.batch_strength combine --inputs {input:q} --out {output:q} > {log:q} 2>&1"


rule claims:
    input:
        scores=f"{OUT}/tables/scores.tsv",
        best=f"{OUT}/tables/best.tsv",
        runs=f"{OUT}/tables/runs.tsv",
        strength=f"{OUT}/tables/batch_strength.tsv",
    output:
        claims=f"{OUT}/tables/claims.tsv",
        tests=f"{OUT}/tables/claim_tests.tsv",
    log:
        f"{OUT}/logs/claims.log",
    benchmark:
        f"{OUT}/benchmarks/claims.tsv"
    conda:
        "../../envs/metrics.yaml"
    params:
        tables=lambda wildcards, input: os.path.dirname(input.scores),
    shell:
        "python -m metrics.claims --tables {params.tables:q} > {log:q} 2>&1"
