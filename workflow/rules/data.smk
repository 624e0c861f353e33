# Data stage: simulate or download a raw dataset, then preprocess it to the section 3
# contract ({out}/data/{dataset}.h5ad).


def simulate_args(wildcards):
    sim = config["datasets"][wildcards.dataset]["simulate"]
    return (
        f"--scenario {sim['scenario']} --seed {sim.get('seed', 1)} "
        f"--n-cells {sim.get('n_cells', 4000)} --n-genes {sim.get('n_genes', 10000)}"
    )


def registry_name(wildcards):
    return config["datasets"][wildcards.dataset]["registry"]


def raw_input_rule(wildcards):
    ds = config["datasets"][wildcards.dataset]
    return "simulate" if "simulate" in ds else "download"


def preprocess_args(wildcards):
    ds = config["datasets"][wildcards.dataset]
    pp = {**config["preprocess"], **ds.get("preprocess", {})}
    if "simulate" in ds:
        keys = {"batch_key": "batch", "label_key": "celltype", "system_key": None, "counts": "X",
                "counts_integer": True}
    else:
        entry = REGISTRY[ds["registry"]]
        keys = {k: entry.get(k) for k in ("batch_key", "label_key", "system_key", "counts", "counts_integer")}
    args = [
        f"--name {wildcards.dataset}",
        f"--batch-key {shlex.quote(keys['batch_key'])}",
        f"--counts {keys['counts'] or 'X'}",
        f"--n-hvg {pp.get('n_hvg', 2000)} --min-genes {pp.get('min_genes', 200)} --min-cells {pp.get('min_cells', 3)}",
    ]
    if keys.get("label_key"):
        args.append(f"--label-key {shlex.quote(keys['label_key'])}")
    if keys.get("system_key"):
        args.append(f"--system-key {shlex.quote(keys['system_key'])}")
    if keys.get("counts_integer") is not None:
        args.append(f"--counts-integer {str(keys['counts_integer']).lower()}")
    return " ".join(args)


rule simulate:
    output:
        f"{OUT}/data/raw/simulated/{{dataset}}.h5ad",
    params:
        args=simulate_args,
    log:
        f"{OUT}/logs/simulate/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/simulate/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m datasets simulate {params.args} --out {output} > {log} 2>&1"


rule download:
    output:
        f"{OUT}/data/raw/downloaded/{{dataset}}.h5ad",
    params:
        name=registry_name,
        registry=config["registry"],
        lock=config["lock"],
    log:
        f"{OUT}/logs/download/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/download/{{dataset}}.tsv"
    retries: 2
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m datasets download --name {params.name} --registry {params.registry} "
        "--lock {params.lock} --out {output} > {log} 2>&1"


def raw_file(wildcards):
    return f"{OUT}/data/raw/{'simulated' if raw_input_rule(wildcards) == 'simulate' else 'downloaded'}/{wildcards.dataset}.h5ad"


rule preprocess:
    input:
        raw_file,
    output:
        f"{OUT}/data/{{dataset}}.h5ad",
    params:
        args=preprocess_args,
    log:
        f"{OUT}/logs/preprocess/{{dataset}}.log",
    benchmark:
        f"{OUT}/benchmarks/preprocess/{{dataset}}.tsv"
    conda:
        "../../envs/data.yaml"
    shell:
        "python -m datasets preprocess --raw {input} --out {output} {params.args} > {log} 2>&1"
