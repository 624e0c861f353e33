"""Through Snakemake: a search's trials are normal runs (run files, scored, in runs.tsv and
scores.tsv), each round asked from the scores of the rounds before; a trial with a grid
setting's values scores as that grid run (same seed, same result); asking a round again from
the recorded trials proposes the same settings; search.tsv puts both arms under one score.

A 2-setting PCA grid (``unintegrated``, no training: seconds) and 2 trials in 2 rounds of 1.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from test_e2e import STUDY_TIMEOUT_S, log_tail, snakemake_cmd, study_env

pytestmark = pytest.mark.slow

STUDY = {
    "seeds": [0],
    "datasets": {"sim_search": {"simulate": {"scenario": "baseline", "seed": 3, "n_cells": 300, "n_genes": 800}}},
    "preprocess": {"n_hvg": 200, "min_genes": 50, "min_cells": 3},
    "methods": {"unintegrated": {"grid": {"n_comps": [5, 20]},
                                 "search": {"seed": 1, "trials_per_round": 1}}},
    "metrics": {"n_neighbors": 50},
}


def test_search_trials_are_recorded_scored_runs_and_rounds_reproduce(tmp_path):
    out = tmp_path / "out"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**STUDY, "out": str(out)}))
    targets = [str(out / "tables/search.tsv"), str(out / "tables/scores.tsv")]
    res = subprocess.run(snakemake_cmd(tmp_path, *targets, cores=1), cwd=tmp_path, env=study_env(),
                         capture_output=True, text=True, timeout=STUDY_TIMEOUT_S)
    assert res.returncode == 0, log_tail(res, 6000)

    rounds = [json.loads((out / f"search/sim_search/unintegrated/round{k}.json").read_text()) for k in (1, 2)]
    trials = [t for r in rounds for t in r["trials"]]
    assert [t["trial"] for t in trials] == [1, 2]
    assert {t["values"]["n_comps"] for t in trials} == {5, 20}  # the whole space, no repeat
    assert rounds[1]["told"][0]["setting"] == trials[0]["setting"]  # round 2 was asked from trial 1's score
    settings = [t["setting"] for t in trials]

    runs = pd.read_csv(out / "tables/runs.tsv", sep="\t")
    scores = pd.read_csv(out / "tables/scores.tsv", sep="\t")
    for setting in settings:
        assert setting.startswith("search-t")
        assert (out / f"runs/sim_search/unintegrated/{setting}/seed0/metrics.json").exists()
        assert runs.loc[runs["setting"] == setting, "status"].tolist() == ["ok"]
        assert scores.loc[scores["setting"] == setting, "status"].tolist() == ["ok"]

    search = pd.read_csv(out / "tables/search.tsv", sep="\t")
    assert search.groupby("arm").size().to_dict() == {"grid": 2, "search": 2}
    assert search[["score", "best_so_far"]].notna().all().all()
    grid_score = search[search["arm"] == "grid"].set_index("n_comps")["score"]
    for row in search[search["arm"] == "search"].itertuples():
        assert row.score == pytest.approx(grid_score[row.n_comps], abs=1e-12)
    assert search.groupby("arm")["best_so_far"].max().nunique() == 1

    # the ask step again, from the recorded trial of round 1: the same proposal
    again = tmp_path / "round2_again.json"
    ask = subprocess.run([sys.executable, "-m", "search", "ask", "--plan", json.dumps(rounds[1]["plan"]),
                          "--round", "2", "--dataset", "sim_search", "--seeds", "0", "--runs-root", str(out / "runs"),
                          "--previous", str(out / "search/sim_search/unintegrated/round1.json"), "--out", str(again)],
                         env=study_env(), capture_output=True, text=True, timeout=300)
    assert ask.returncode == 0, ask.stderr
    assert json.loads(again.read_text())["trials"] == rounds[1]["trials"]
