# Functions of the adaptive search's rules (workflow/rules/search.smk): which rounds, trials and
# files a search has. Snakemake's lint wants functions apart from rules.


def search_blocks():
    """[(dataset, method)] of every search: each dataset x searched method it runs."""
    return [
        (d, m) for d in config["datasets"] for m in dataset_methods(d) if m in SEARCH
    ]


def round_file(dataset, method, round_no):
    return f"{OUT}/search/{dataset}/{method}/round{round_no}.json"


def round_trial_files(path, name):
    """The ``name`` files (run.h5ad, metrics.json) of the trials of one written round file."""
    trials = json.loads(Path(path).read_text())["trials"]
    return [str(Path(run).with_name(name)) for t in trials for run in t["runs"]]


def search_trial_files(name, blocks=None, rounds=None):
    """The ``name`` files of the search trials of ``blocks`` (default: all) in rounds 1..``rounds``
    (default: all); asks Snakemake for each round's checkpoint first."""
    files = []
    for dataset, method in blocks or search_blocks():
        last = SEARCH[method].rounds if rounds is None else rounds
        for k in range(1, last + 1):
            done = checkpoints.search_round.get(dataset=dataset, method=method, round=k)
            files += round_trial_files(done.output[0], name)
    return files


def earlier_rounds(wildcards):
    """A round's inputs: the round files before it and the scores of their trials' runs."""
    before = int(wildcards.round) - 1
    block = [(wildcards.dataset, wildcards.method)]
    return [
        round_file(wildcards.dataset, wildcards.method, k) for k in range(1, before + 1)
    ] + search_trial_files("metrics.json", block, before)


def search_plan_json(wildcards):
    return shlex.quote(json.dumps(SEARCH[wildcards.method].to_json(), sort_keys=True))


def search_seeds(wildcards):
    return " ".join(str(s) for s in run_seeds(wildcards.dataset, wildcards.method))


def grid_metrics_files(dataset, method):
    """The scores of the grid's fully labelled runs, in the grid's order (the search's twin)."""
    return [
        f"{run_dir(dataset, method, s, seed)}/metrics.json"
        for s, seed in runs_of(dataset, method)
        if SETTING_INDEX[(method, s)][1] == 0
    ]


def search_table_blocks():
    blocks = [
        {
            "grid_metrics": grid_metrics_files(d, m),
            "rounds": [round_file(d, m, k) for k in range(1, SEARCH[m].rounds + 1)],
        }
        for d, m in search_blocks()
    ]
    return shlex.quote(json.dumps(blocks))
