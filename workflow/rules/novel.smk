# Held-out novel cell type (scDREAMER Suppl. Fig. 3): scores of the held-out type in every run
# that held one out (a setting with novel_label; methods/novel.py, metrics/novel_type.py). The
# table has its header only when no run did.


rule novel_type:
    input:
        runs=[run for _, run in novel_runs()],
        data=sorted({f"{OUT}/data/{d}.h5ad" for d, _ in novel_runs()}),
    output:
        f"{OUT}/tables/novel_type.tsv",
    log:
        f"{OUT}/logs/novel_type.log",
    conda:
        "../../envs/metrics.yaml"
    params:
        data=" ".join(shlex.quote(f"{OUT}/data/{d}.h5ad") for d, _ in novel_runs()),
    shell:
        "python -m metrics.novel_type --data {params.data} --runs {input.runs:q} "
        "--out {output:q} > {log:q} 2>&1"
