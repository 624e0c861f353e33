# Config validation and the study plan (which runs exist). Logic that needs tests lives in
# the packages (methods/settings.py); this file only wires it to Snakemake.
import dataclasses
import json
import os
import re
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

REPO = Path(workflow.basedir).parent
sys.path.insert(0, str(REPO))

from datasets.schemas import dotted, first_problem  # noqa: E402
from guards import study_config  # noqa: E402
from guards.yaml_files import DuplicateKeyError, load_unique  # noqa: E402
from datasets.study_files import damaged_data_files, unwritable_message  # noqa: E402
from methods import job_resources, registry  # noqa: E402
from methods.external import ExternalMethodError, external_spec  # noqa: E402
from methods.settings import (
    ConfigError,
    expand_settings,
    with_label_missing,
)  # noqa: E402
from search.plan import is_trial_setting, search_plan  # noqa: E402

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def _config_error(msg):
    raise WorkflowError(f"invalid config: {msg}")


def config_folder(keys):
    """(folder, words) where relative paths of the config value at ``keys`` start: the folder of
    the last config file that sets it, else (--config) the working directory."""
    value = config
    for key in keys:
        value = value[key]
    folder = None
    for path in workflow.configfiles:
        found = yaml.safe_load(Path(path).read_text()) or {}
        for key in keys:
            found = found.get(key) if isinstance(found, dict) else None
        if found == value:
            folder = Path(path).resolve().parent
    if folder is None:
        return Path.cwd(), f"{Path.cwd()}, the working directory"
    return folder, f"{folder}, the folder of the config file"


def _check_config_files():
    """Snakemake keeps the last of two equal keys in a config file: a repeated key (a second
    `harmony:`) silently dropped the first one's grid. Re-read each file, refusing repeats.
    """
    for path in workflow.configfiles:
        try:
            load_unique(path)
        except DuplicateKeyError as exc:
            _config_error(str(exc))
        except (OSError, yaml.YAMLError):
            pass  # Snakemake read it (as JSON or YAML) and reports its own problems


def _checked(check, *args):
    try:
        return check(*args)
    except study_config.PlanError as exc:
        _config_error(str(exc))


def _validate_config(cfg):
    found = first_problem("config", cfg)
    if found:
        _config_error(f"{dotted(found[0]) or '(top level)'}: {found[1]}")
    validate(cfg, schema=str(SCHEMA))  # fills schema defaults
    # the folder the rules write to, with ~ expanded (config_used.json records it)
    cfg["out"] = _checked(study_config.check_out, cfg["out"])
    _checked(study_config.check_metrics, cfg["metrics"])
    _checked(
        study_config.check_device,
        cfg["device"],
        workflow.local_exec,
        job_resources.local_gpu(),
    )
    for name in (cfg.get("label_transfer") or {}).get("datasets", []):
        if name not in cfg["datasets"]:
            _config_error(
                f"label_transfer.datasets: '{name}' is not in the datasets section"
            )
    for name, ds in cfg["datasets"].items():
        for m in ds.get("methods", []):
            if m not in cfg["methods"]:
                _config_error(
                    f"datasets.{name}.methods: '{m}' is not in the methods section"
                )
    for name, section in cfg["methods"].items():
        if (section or {}).get("module"):
            try:
                folder = config_folder(("methods", name, "module"))[0]
                registry.register(
                    name, external_spec(name, section, folder, REPO / "envs")
                )
            except ExternalMethodError as exc:
                _config_error(str(exc))
            except KeyError as exc:
                _config_error(f"methods.{name}: {exc.args[0]}")
        elif name not in registry.METHODS:
            _config_error(
                f"methods.{name}: unknown method; known: {', '.join(sorted(registry.METHODS))}; "
                "for your own method give module: (README, Configuration)"
            )
    scaling = cfg.get("scaling")
    if scaling:
        if scaling["dataset"] not in cfg["datasets"]:
            _config_error(
                f"scaling.dataset: '{scaling['dataset']}' is not in the datasets section"
            )
        for m in scaling.get("methods", []):
            if m not in cfg["methods"]:
                _config_error(f"scaling.methods: '{m}' is not in the methods section")
        for m in scaling.get("method_sizes", {}):
            if m not in (scaling.get("methods") or cfg["methods"]):
                _config_error(
                    f"scaling.method_sizes: '{m}' is not a method of the scaling study"
                )
    if any(ds.get("registry") for ds in cfg["datasets"].values()):
        reg = load_dataset_registry(cfg)
        for name, ds in cfg["datasets"].items():
            if ds.get("registry") and ds["registry"] not in reg:
                _config_error(
                    f"datasets.{name}.registry: '{ds['registry']}' is not an entry of {cfg['registry']}"
                )


def load_dataset_registry(cfg):
    from datasets.registry import RegistryError, load_registry

    try:
        return load_registry(REPO / cfg["registry"])
    except (OSError, RegistryError) as exc:
        _config_error(f"registry: {exc}")


def _file_entries(cfg, lock):
    """name -> registry entry of each file: dataset, checked before any job runs; the config
    gets the absolute path (config_used.json records it)."""
    from datasets.local_file import LocalFileError, check_at_plan, file_entry
    from datasets.lock import LockFileError
    from datasets.registry import RegistryError

    entries = {}
    for name, ds in cfg["datasets"].items():
        if "file" not in ds:
            continue
        folder, words = config_folder(("datasets", name, "file", "path"))
        try:
            entries[name] = file_entry(name, ds["file"], folder, words)
            check_at_plan(name, entries[name], lock)
        except (LocalFileError, RegistryError, LockFileError) as exc:
            _config_error(str(exc))
        ds["file"]["path"] = entries[name]["path"]
    return entries


_check_config_files()
_validate_config(config)
OUT = config["out"]
# Relative registry and lock paths belong to the workflow's repo (as the registry always did),
# not to the working directory: --directory elsewhere must find the same files.
REGISTRY_FILE = str(REPO / config["registry"])
LOCK = str(REPO / config["lock"])
REGISTRY = (
    load_dataset_registry(config)
    if any(d.get("registry") for d in config["datasets"].values())
    else {}
)
FILE_ENTRIES = _file_entries(config, LOCK)
# A damaged data file would make Snakemake redo its runs and delete them when they fail: stop first.
if damaged_data_files(OUT, config["datasets"]):
    raise WorkflowError("\n".join(damaged_data_files(OUT, config["datasets"])))


def _settings():
    out = {}
    for method, section in config["methods"].items():
        try:
            settings = expand_settings(method, section)
        except ConfigError as exc:
            _config_error(str(exc))
        out[method] = with_label_missing(method, settings, config["label_missing"])
    return out


SETTINGS = _settings()  # method -> [(setting, params, label_missing)]
SETTING_INDEX = {(m, s): (p, lm) for m, rows in SETTINGS.items() for s, p, lm in rows}


def _search_plans():
    out = {}
    for method, section in config["methods"].items():
        try:
            plan = search_plan(method, section)
        except ConfigError as exc:
            _config_error(str(exc))
        if plan:
            out[method] = plan
    return out


SEARCH = _search_plans()  # method -> search.plan.SearchPlan (rules/search.smk)


def setting_params(wildcards):
    """(params, label_missing) of a run: a grid setting's, or a search trial's from its round file
    (the round's checkpoint wrote it before any job asked for the trial's run)."""
    if not is_trial_setting(wildcards.setting):
        return SETTING_INDEX[(wildcards.method, wildcards.setting)]
    for path in sorted(
        Path(f"{OUT}/search/{wildcards.dataset}/{wildcards.method}").glob("round*.json")
    ):
        for trial in json.loads(path.read_text())["trials"]:
            if trial["setting"] == wildcards.setting:
                return trial["params"], 0.0
    raise WorkflowError(
        f"{wildcards.setting}: no round file of the search of {wildcards.method} on "
        f"{wildcards.dataset} names this trial ({OUT}/search/{wildcards.dataset}/{wildcards.method})"
    )


def dataset_methods(dataset):
    subset = config["datasets"][dataset].get("methods")
    return [m for m in config["methods"] if subset is None or m in subset]


def run_seeds(dataset, method):
    section = config["methods"][method] or {}
    return (
        section.get("seeds")
        or config["datasets"][dataset].get("seeds")
        or config["seeds"]
    )


def runs_of(dataset, method):
    """[(setting, seed)] of one dataset x method."""
    return [
        (s, seed) for s, _, _ in SETTINGS[method] for seed in run_seeds(dataset, method)
    ]


def run_dir(dataset, method, setting, seed):
    return f"{OUT}/runs/{dataset}/{method}/{setting}/seed{seed}"


def all_run_files():
    return [
        f"{run_dir(d, m, s, seed)}/run.h5ad"
        for d in config["datasets"]
        for m in dataset_methods(d)
        for s, seed in runs_of(d, m)
    ]


def env_of(method):
    env = registry.get(method).env
    return (
        env if env.endswith((".yaml", ".yml")) else str(REPO / "envs" / f"{env}.yaml")
    )


def external_flag(wildcards):
    """--external SPEC of your own method (the runner registers it), empty for built-in ones."""
    spec = registry.get(wildcards.method)
    if not spec.external:
        return ""
    return f"--external {shlex.quote(json.dumps(dataclasses.asdict(spec), sort_keys=True))}"


def method_code(wildcards):
    """Your own method's module file as an input of its runs: editing it reruns them (the runs of
    built-in methods record their code's sha256, methods/registry.py code_identity)."""
    if not registry.get(wildcards.method).external:
        return []
    return [str(registry.code_file(wildcards.method))]


def method_env(wildcards):
    return env_of(wildcards.method)


def run_params(wildcards):
    params, _ = setting_params(wildcards)
    return shlex.quote(json.dumps(params, sort_keys=True))


def run_label_missing(wildcards):
    return setting_params(wildcards)[1]


# the command line that runs this study, for the pages that name it
STUDY_COMMAND = " ".join(
    ["snakemake -s workflow/Snakefile --cores N"]
    + [f"--configfile {os.path.relpath(c, REPO)}" for c in workflow.configfiles]
)


def all_targets():
    # Data, run and metrics files are targets too: Snakemake redoes an intermediate file that is
    # missing only when a target needs it, so without them a deleted run stayed missing
    # ("Nothing to be done") while the tables still listed it.
    targets = [f"{OUT}/data/{d}.h5ad" for d in config["datasets"]]
    targets += all_run_files() + all_metrics_files()
    targets += [f"{OUT}/tables/best.tsv", f"{OUT}/report.html", f"{OUT}/claims.md"]
    if config.get("scaling"):
        targets.append(f"{OUT}/tables/scaling.tsv")
    if config.get("label_transfer"):
        targets.append(f"{OUT}/tables/label_transfer.tsv")
    if SEARCH:
        targets.append(f"{OUT}/tables/search.tsv")
    return targets


def label_transfer_runs():
    """Run files of the cross-modality task's datasets (config label_transfer.datasets)."""
    chosen = config["label_transfer"].get("datasets") or list(config["datasets"])
    return [
        f"{run_dir(d, m, s, seed)}/run.h5ad"
        for d in chosen
        for m in dataset_methods(d)
        for s, seed in runs_of(d, m)
    ]


STRICT_FLAG = "--strict" if config["strict"] else ""
# Bad data or a failed download is recorded as a failed dataset (its runs fail, the study goes
# on, the report shows it); strict: the job fails instead.
RECORD_FAILURE_FLAG = "" if config["strict"] else "--record-failure"
MAX_MEM_FLAG = (
    f"--max-mem-mb {config['max_mem_mb']}"
    if isinstance(config.get("max_mem_mb"), int)
    else ""
)


wildcard_constraints:
    dataset=r"[A-Za-z0-9][A-Za-z0-9_.-]*",
    method=r"[a-z0-9_]+",
    setting=r"[A-Za-z0-9._+-]+",
    seed=r"\d+",
    n=r"\d+",


onstart:
    if unwritable_message(OUT):
        raise WorkflowError(unwritable_message(OUT))
    os.environ[ATTEMPTS_ENV] = str(rules.integrate.rule.restart_times + 1)
    Path(f"{OUT}/logs").mkdir(parents=True, exist_ok=True)
    with open(f"{OUT}/logs/invocations.log", "a") as fh:
        fh.write(
            f"start\t{datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
        )


# --- data stage (rules/data.smk) ---


def simulate_args(wildcards):
    sim = config["datasets"][wildcards.dataset]["simulate"]
    return (
        f"--scenario {sim['scenario']} --seed {sim.get('seed', 1)} "
        f"--n-cells {sim.get('n_cells', 4000)} --n-genes {sim.get('n_genes', 10000)} "
        f"--name {wildcards.dataset} {RECORD_FAILURE_FLAG}"
    )


def registry_name(wildcards):
    return config["datasets"][wildcards.dataset]["registry"]


def raw_input_rule(wildcards):
    ds = config["datasets"][wildcards.dataset]
    return (
        "simulate" if "simulate" in ds else "download" if "registry" in ds else "file"
    )


def preprocess_args(wildcards):
    ds = config["datasets"][wildcards.dataset]
    pp = {**config["preprocess"], **ds.get("preprocess", {})}
    if "simulate" in ds:
        keys = {
            "batch_key": "batch",
            "label_key": "celltype",
            # the systems scenarios (datasets/simulate_systems.py) nest batches in systems
            "system_key": (
                "system" if ds["simulate"]["scenario"].startswith("systems") else None
            ),
            "counts": "X",
            "counts_integer": True,
        }
    else:
        entry = FILE_ENTRIES.get(wildcards.dataset) or REGISTRY[ds["registry"]]
        keys = {
            k: entry.get(k)
            for k in (
                "batch_key",
                "label_key",
                "system_key",
                "counts",
                "counts_integer",
            )
        }
    args = [
        f"--name {wildcards.dataset}",
        f"--batch-key {shlex.quote(keys['batch_key'])}",
        f"--counts {shlex.quote(keys['counts'] or 'X')}",
        f"--n-hvg {pp.get('n_hvg', 2000)} --min-genes {pp.get('min_genes', 200)} --min-cells {pp.get('min_cells', 3)}",
        f"--duplicate-cells {pp.get('duplicate_cells', 'error')} {RECORD_FAILURE_FLAG}",
    ]
    if keys.get("label_key"):
        args.append(f"--label-key {shlex.quote(keys['label_key'])}")
    if keys.get("system_key"):
        args.append(f"--system-key {shlex.quote(keys['system_key'])}")
    if keys.get("counts_integer") is not None:
        args.append(f"--counts-integer {str(keys['counts_integer']).lower()}")
    return " ".join(args)


def raw_file(wildcards):
    """The preprocess job's input: the raw h5ad, or the files of a file: dataset (no copy)."""
    if raw_input_rule(wildcards) == "file":
        from datasets.local_file import content_files

        return [str(p) for p in content_files(FILE_ENTRIES[wildcards.dataset]["path"])]
    return f"{OUT}/data/raw/{'simulated' if raw_input_rule(wildcards) == 'simulate' else 'downloaded'}/{wildcards.dataset}.h5ad"


def preprocess_source(wildcards):
    if raw_input_rule(wildcards) != "file":
        return f"--raw {shlex.quote(raw_file(wildcards))}"
    entry = json.dumps(FILE_ENTRIES[wildcards.dataset], sort_keys=True)
    return f"--file-entry {shlex.quote(entry)} --lock {shlex.quote(LOCK)}"


# --- scoring (rules/metrics.smk): jobs sized to the data, generated here ---

METRIC_OPTIONS = {
    **config["metrics"].get("options", {}),
    "n_neighbors": config["metrics"]["n_neighbors"],
}
METRICS_SHELL = (
    "BENCH_CACHE_DIR={params.cache:q} python -m metrics score --data {input.data:q} "
    "--runs {input.runs:q} --out {output:q} --options {params.options} > {log:q} 2>&1"
)


# what the tables step (and the search's objective) reads of the config: metric set, bio weight,
# selection rules
SELECTION_JSON = shlex.quote(
    json.dumps(
        {
            **config["selection"],
            **config["metrics"],
            "datasets": {
                name: ds["selection"]
                for name, ds in config["datasets"].items()
                if ds.get("selection")
            },
        },
        sort_keys=True,
    )
)


def metrics_options_json():
    return shlex.quote(json.dumps(METRIC_OPTIONS, sort_keys=True))


def dataset_run_files(dataset, methods=None):
    return [
        f"{run_dir(dataset, m, s, seed)}/run.h5ad"
        for m in (methods or dataset_methods(dataset))
        for s, seed in runs_of(dataset, m)
    ]


def scoring_jobs(dataset):
    """[(job name, run files)] of a dataset's generated scoring rules; [] when metrics_run scores
    its runs one per job. metrics.group auto packs runs up to metrics.job_cells cells per job
    (start-up, ~40 s with its JIT warm-up, is paid once per job); run, method, dataset: one
    job per run, per dataset x method, per dataset."""
    group = config["metrics"]["group"]
    if group == "dataset":
        runs = dataset_run_files(dataset)
        return [("all", runs)] if runs else []
    if group == "method":
        return [(m, dataset_run_files(dataset, [m])) for m in dataset_methods(dataset)]
    if group == "run":
        return []
    chunks = job_resources.pack_runs(
        dataset_run_files(dataset),
        dataset_cells(dataset),
        config["metrics"]["job_cells"],
    )
    if all(len(c) == 1 for c in chunks):
        return []
    if len(chunks) == 1:
        return [("all", chunks[0])]
    return [(f"part{i + 1}", c) for i, c in enumerate(chunks)]


def _metrics_rule(dataset, group, runs):
    outs = [r.replace("run.h5ad", "metrics.json") for r in runs]

    rule:
        name:
            f"metrics_{dataset}_{group}".replace("-", "_").replace(".", "_")
        input:
            data=f"{OUT}/data/{dataset}.h5ad",
            runs=runs,
        output:
            outs,
        log:
            f"{OUT}/logs/metrics/{dataset}/{group}.log",
        benchmark:
            f"{OUT}/benchmarks/metrics/{dataset}/{group}.tsv"
        # score a dataset as soon as its runs are done (its tables wait on nothing else)
        priority: 10
        conda:
            "../../envs/metrics.yaml"
        threads: 1
        resources:
            mem_mb=metrics_resources(dataset)[0],
            runtime=metrics_resources(dataset)[1],
        params:
            options=metrics_options_json(),
            cache=f"{OUT}/cache",
        shell:
            METRICS_SHELL


def all_metrics_files():
    return [f.replace("run.h5ad", "metrics.json") for f in all_run_files()]


# --- scaling study (rules/scaling.smk) ---

SCALING = config.get("scaling") or {}


def scaling_methods():
    return SCALING.get("methods") or list(config["methods"])


def scaling_params(wildcards):
    section = config["methods"][wildcards.method] or {}
    return shlex.quote(json.dumps(section.get("params") or {}, sort_keys=True))


def scaling_runs():
    sizes = SCALING.get("method_sizes", {})
    return [
        f"{OUT}/scaling/{SCALING['dataset']}/{m}/n{n}/run.h5ad"
        for m in scaling_methods()
        for n in sizes.get(m, SCALING.get("sizes", []))
    ]


# --- report (rules/report.smk) ---


def report_inputs(wildcards):
    tables = [
        f"{OUT}/tables/{t}"
        for t in ("runs.tsv", "metrics.tsv", "scores.tsv", "best.tsv", "summary.tsv")
    ]
    if config.get("scaling"):
        tables.append(f"{OUT}/tables/scaling.tsv")
    if SEARCH:
        tables.append(f"{OUT}/tables/search.tsv")
    tables += [
        f"{OUT}/tables/{t}"
        for t in (
            "loss_history.tsv.gz",
            "batch_strength.tsv",
            "claims.tsv",
            "claim_tests.tsv",
            "novel_type.tsv",
        )
    ]
    if config.get("label_transfer"):
        tables.append(f"{OUT}/tables/label_transfer.tsv")
    return tables


def novel_runs():
    """[(dataset, run file)] of the runs whose setting holds a novel cell type out."""
    return [
        (d, f"{run_dir(d, m, s, seed)}/run.h5ad")
        for d in config["datasets"]
        for m in dataset_methods(d)
        for s, seed in runs_of(d, m)
        if SETTING_INDEX[(m, s)][0].get("novel_label") is not None
    ]
