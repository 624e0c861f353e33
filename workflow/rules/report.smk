# Figures (plotnine, PNG + PDF) and one self-contained HTML report; the figure folder is
# registered with `snakemake --report`.


def report_inputs(wildcards):
    tables = [f"{OUT}/tables/{t}" for t in ("runs.tsv", "metrics.tsv", "scores.tsv", "best.tsv", "summary.tsv")]
    if config.get("scaling"):
        tables.append(f"{OUT}/tables/scaling.tsv")
    return tables


rule config_used:
    output:
        f"{OUT}/config_used.json",
    params:
        text=shlex.quote(json.dumps(config, sort_keys=True, indent=1, default=str)),
    log:
        f"{OUT}/logs/config_used.log",
    conda:
        "../../envs/data.yaml"
    shell:
        "(printf '%s\\n' {params.text} > {output}.tmp && mv {output}.tmp {output}) > {log} 2>&1"


rule report:
    input:
        tables=report_inputs,
        config=f"{OUT}/config_used.json",
    output:
        html=report(f"{OUT}/report.html", caption="report/report.rst", category="Report"),
        figures=report(
            directory(f"{OUT}/figures"),
            patterns=["{name}.png"],
            caption="report/figure.rst",
            category="Figures",
        ),
    params:
        out=OUT,
        umap_max=config["report"]["umap_max_cells"],
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    conda:
        "../../envs/report.yaml"
    shell:
        "python -m reports render --tables {params.out}/tables --out-dir {output.figures} "
        "--html {output.html} --config {input.config} --invocations {params.out}/logs/invocations.log "
        "--umap-max-cells {params.umap_max} > {log} 2>&1"
