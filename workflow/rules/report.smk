# Figures (plotnine, PNG + PDF) and one self-contained HTML report; the figure folder is
# registered with `snakemake --report`.


rule config_used:
    output:
        f"{OUT}/config_used.json",
    log:
        f"{OUT}/logs/config_used.log",
    conda:
        "../../envs/data.yaml"
    params:
        text=shlex.quote(json.dumps(config, sort_keys=True, indent=1, default=str)),
    shell:
        "(printf '%s\\n' {params.text} > {output:q}.tmp && mv {output:q}.tmp {output:q}) > {log:q} 2>&1"


rule report:
    input:
        tables=report_inputs,
        config=f"{OUT}/config_used.json",
    output:
        html=report(
            f"{OUT}/report.html", caption="../report/report.rst", category="Report"
        ),
        figures=report(
            directory(f"{OUT}/figures"),
            patterns=["{name}.png"],
            caption="../report/figure.rst",
            category="Figures",
        ),
    log:
        f"{OUT}/logs/report.log",
    benchmark:
        f"{OUT}/benchmarks/report.tsv"
    conda:
        "../../envs/report.yaml"
    # the last job of a study: UMAPs of the representative runs in 2 processes
    threads: 2
    params:
        tables=lambda wildcards, input: os.path.dirname(input.tables[0]),
        invocations=f"{OUT}/logs/invocations.log",
        umap_max=config["report"]["umap_max_cells"],
    shell:
        "python -m reports render --tables {params.tables:q} --out-dir {output.figures:q} "
        "--html {output.html:q} --config {input.config:q} --invocations {params.invocations:q} "
        "--umap-max-cells {params.umap_max} --umap-workers {threads} > {log:q} 2>&1"


rule claims_page:
    # the claims table with the figures behind it, as Markdown (docs/results.md is this page of
    # the claims study, config/claims.yaml)
    input:
        claims=f"{OUT}/tables/claims.tsv",
        tests=f"{OUT}/tables/claim_tests.tsv",
        html=f"{OUT}/report.html",
    output:
        md=f"{OUT}/claims.md",
        figures=directory(f"{OUT}/claims_figures"),
    log:
        f"{OUT}/logs/claims_page.log",
    conda:
        "../../envs/report.yaml"
    params:
        tables=lambda wildcards, input: os.path.dirname(input.claims),
        figures=f"{OUT}/figures",
        command=STUDY_COMMAND,
    shell:
        "python -m reports claims-md --tables {params.tables:q} --figures {params.figures:q} "
        "--out {output.md:q} --command {params.command:q} > {log:q} 2>&1"
