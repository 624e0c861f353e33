# How jobs run: memory and runtime from the data's size and the method (the coefficients and
# their sources: methods/job_resources.py), growing with the attempt; GPU requests; what the
# runner needs to know about its attempt; the summary at the end of a study. Included right
# after common.smk.
ATTEMPTS_ENV = "BENCH_ATTEMPTS"


def attempt_number(wildcards, attempt):
    return attempt


def attempts_total(wildcards, rulename):
    """Attempts Snakemake makes of a job in all. A cluster job runs its command in a new Snakemake
    process started with --retries 0; it reads the total from the environment that the scheduling
    process exported at start (onstart) and sbatch passed on (--export=ALL)."""
    inherited = os.environ.get(ATTEMPTS_ENV)
    if inherited:
        return int(inherited)
    return workflow.get_rule(rulename).restart_times + 1


def dataset_cells(dataset):
    """Cells of a dataset known from the config or the registry, before any file exists (an upper
    bound: QC drops a few); None when unknown."""
    ds = config["datasets"][dataset]
    if "simulate" in ds:
        return ds["simulate"].get("n_cells", 4000)
    if "file" in ds:  # an h5ad says in its header; other formats: unknown
        size = job_resources.h5ad_size(ds["file"]["path"])
        return size[0] if size else None
    entry = REGISTRY.get(ds.get("registry"), {})
    while entry and not entry.get("expected_cells") and entry.get("derive"):
        # a derived dataset is a subset: at most its source's cells
        entry = REGISTRY.get(entry["derive"]["from"], {})
    return entry.get("expected_cells")


def dataset_genes(dataset):
    """Genes of the preprocessed dataset (the HVGs)."""
    pp = {**config["preprocess"], **config["datasets"][dataset].get("preprocess", {})}
    return pp.get("n_hvg", 2000)


def known_size(dataset):
    """(cells, genes, where the cells are counted) of a dataset before its jobs run: from its
    preprocessed file when an earlier run made it, else upper bounds from the plan (cells
    before QC, genes at most n_hvg); cells None when unknown."""
    path = f"{OUT}/data/{dataset}.h5ad"
    size = job_resources.h5ad_size(path)
    if size and size[0]:  # a failed-dataset record has no cells: fall back to the plan
        return size[0], size[1], path
    ds = config["datasets"][dataset]
    genes = dataset_genes(dataset)
    if "simulate" in ds:
        genes = min(genes, ds["simulate"].get("n_genes", 10000))
        return dataset_cells(dataset), genes, f"datasets.{dataset}.simulate.n_cells"
    if "file" in ds:
        raw = job_resources.h5ad_size(ds["file"]["path"])
        genes = min(genes, raw[1]) if raw else genes
        return dataset_cells(dataset), genes, f"the header of {ds['file']['path']}"
    return dataset_cells(dataset), genes, f"registry entry {ds['registry']}"


def check_plan_sizes():
    """Config values that the data's size rules out, refused before any job runs: scoring
    neighbours, a setting's PCA components, scaling subsample sizes."""
    for dataset in config["datasets"]:
        cells, genes, source = known_size(dataset)
        if dataset_methods(dataset):
            _checked(
                study_config.check_neighbors,
                config["metrics"]["n_neighbors"],
                dataset,
                cells,
                source,
            )
        for method in dataset_methods(dataset):
            for setting, params, _ in SETTINGS[method]:
                _checked(
                    study_config.check_components,
                    method,
                    setting,
                    params,
                    dataset,
                    cells,
                    genes,
                    source,
                )
            # a search's values too: a listed value or the top of a range
            space = SEARCH[method].space if method in SEARCH else {}
            for name, dim in space.items():
                for value in dim if isinstance(dim, list) else [dim["high"]]:
                    _checked(
                        study_config.check_components,
                        method,
                        f"search space {name}",
                        {name: value},
                        dataset,
                        cells,
                        genes,
                        source,
                    )
    if SCALING:
        cells, _, source = known_size(SCALING["dataset"])
        sizes = {"": SCALING["sizes"], **SCALING.get("method_sizes", {})}
        _checked(
            study_config.check_scaling_sizes, sizes, SCALING["dataset"], cells, source
        )


UNKNOWN_CELLS = 500_000  # plan-time guess for a dataset of unknown size (atlas scale)


def data_size(path, dataset):
    """(cells, genes) of a preprocessed dataset: from its file once it exists, else the plan."""
    size = job_resources.h5ad_size(path)
    if size:
        return size[0], size[1]
    return dataset_cells(dataset) or UNKNOWN_CELLS, dataset_genes(dataset)


def method_params(method, params):
    return {**registry.get(method).defaults, **params}


def integrate_mem_mb(wildcards, input, attempt):
    cells, genes = data_size(input.data, wildcards.dataset)
    return job_resources.integrate_mem_mb(wildcards.method, cells, genes, attempt)


def integrate_runtime(wildcards, input, attempt):
    cells, _ = data_size(input.data, wildcards.dataset)
    params = method_params(wildcards.method, setting_params(wildcards)[0])
    return job_resources.integrate_runtime(wildcards.method, cells, params, attempt)


def scaling_mem_mb(wildcards, input, attempt):
    _, genes = data_size(input.data, wildcards.dataset)
    return job_resources.integrate_mem_mb(
        wildcards.method, int(wildcards.n), genes, attempt
    )


def scaling_runtime(wildcards, input, attempt):
    params = method_params(
        wildcards.method,
        (config["methods"][wildcards.method] or {}).get("params") or {},
    )
    return job_resources.integrate_runtime(
        wildcards.method, int(wildcards.n), params, attempt
    )


def simulate_mem_mb(wildcards, attempt):
    sim = config["datasets"][wildcards.dataset]["simulate"]
    cells, genes = sim.get("n_cells", 4000), sim.get("n_genes", 10000)
    return job_resources.simulate_resources(cells, genes, attempt)[0]


def simulate_runtime(wildcards, attempt):
    sim = config["datasets"][wildcards.dataset]["simulate"]
    cells, genes = sim.get("n_cells", 4000), sim.get("n_genes", 10000)
    return job_resources.simulate_resources(cells, genes, attempt)[1]


def raw_nnz(wildcards, input):
    """Non-zeros of a raw dataset: from the raw file once it exists, else cells x a 10x-like density."""
    size = job_resources.h5ad_size(input[0]) if input else None
    if size:
        return size[2]
    cells = dataset_cells(wildcards.dataset) or UNKNOWN_CELLS
    return cells * job_resources.PLAN_NNZ_PER_CELL


def raw_mem_mb(wildcards, input, attempt):
    return job_resources.raw_resources(raw_nnz(wildcards, input), attempt)[0]


def raw_runtime(wildcards, input, attempt):
    return job_resources.raw_resources(raw_nnz(wildcards, input), attempt)[1]


def subsample_mem_mb(wildcards, input, attempt):
    cells, genes = data_size(input[0], wildcards.dataset)
    return job_resources.subsample_resources(cells, genes, attempt)[0]


def subsample_runtime(wildcards, input, attempt):
    cells, genes = data_size(input[0], wildcards.dataset)
    return job_resources.subsample_resources(cells, genes, attempt)[1]


def gpu_request(wildcards):
    """1 for a deep-learning method's job that will have a GPU: on a cluster always (the node
    has it); locally only when this machine shows one, so that the default profile's limit
    (resources gpu=1) does not queue CPU-only runs of these methods one at a time."""
    if not registry.get(wildcards.method).gpu or config["device"] == "cpu":
        return 0
    if (
        workflow.local_exec
        and config["device"] == "auto"
        and not job_resources.local_gpu()
    ):
        return 0
    return 1


def gpu_model_request(wildcards):
    """config gpu_model for GPU jobs only (SLURM: --gpus=MODEL:1); None drops the resource."""
    return config["gpu_model"] if gpu_request(wildcards) else None


def metrics_resources(dataset=None):
    """mem_mb and runtime callables of a scoring job (of ``dataset``, else its wildcard)."""

    def size(wildcards, input):
        return data_size(input.data, dataset or wildcards.dataset)[0]

    def mem_mb(wildcards, input, attempt):
        return job_resources.metrics_mem_mb(size(wildcards, input), attempt)

    def runtime(wildcards, input, attempt):
        n_runs = 1 if isinstance(input.runs, str) else len(input.runs)
        return job_resources.metrics_runtime(size(wildcards, input), n_runs, attempt)

    return mem_mb, runtime


# The runner's view of the job: attempt of attempts (out of memory or time before the last one
# exits non-zero, so Snakemake retries), and with max_mem_mb: job the job's memory as its limit.
# Resources, not params: they change with the attempt, and a params change reruns finished jobs.
# The study's time limit per run (run_time_limit_min) is a resource too: changing it must not
# rerun finished runs.
RUN_TIME_LIMIT_S = max(1, round(config["run_time_limit_min"] * 60))
RUN_JOB_FLAGS = (
    "--attempt {resources.attempt} --attempts {resources.attempts} "
    "--run-time-limit-s {resources.run_time_limit_s}"
) + (" --max-mem-mb {resources.mem_mb}" if config.get("max_mem_mb") == "job" else "")


def report_failed_runs(finished):
    from snakemake.logging import logger

    from methods.study_summary import summary_lines

    for line in summary_lines(OUT, finished):
        logger.info(line)


check_plan_sizes()
