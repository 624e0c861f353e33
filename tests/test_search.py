"""The adaptive search (search/): a bad search block is one line at plan time, the ask step is a
pure function of the scored trials and the seed, the table's score is fixed, and the report
compares grid and search at equal run counts."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from methods.settings import ConfigError
from search.ask import ask_round
from search.plan import search_plan, space_size
from search.table import fixed_score, with_best_so_far

GRID = {"cycle_weight": [2, 10, 50], "kl_weight": [1, 2, 5]}


def plan(**search):
    return search_plan("sysvi", {"grid": GRID, "search": search})


def toy_score(values):
    """A smooth objective with its best at the grid's corner cycle_weight 2, kl_weight 5."""
    return values["kl_weight"] / 5 - np.log10(values["cycle_weight"]) / 2


def run_search(p):
    """Every round of a search against toy_score, as the workflow runs it (scores told back)."""
    scored = []
    for r in range(1, p.rounds + 1):
        trials = ask_round(p, scored, r)
        scored += [{"values": t["values"], "score": toy_score(t["values"])} for t in trials]
    return [s["values"] for s in scored]


def test_defaults_take_the_grid_space_and_budget():
    p = plan()
    assert p.space == GRID and p.n_trials == 9 and p.trials_per_round == 3 and p.rounds == 3
    assert p.startup_trials == 3 and p.round_trials(3) == [7, 8, 9]
    assert space_size(p.space) == 9
    p = search_plan("sysvi", {"params": {"kl_weight": 1}, "grid": {"cycle_weight": [2, 5]},
                              "search": {"space": {"cycle_weight": {"low": 1, "high": 50, "log": True}},
                                         "n_trials": 5, "trials_per_round": 2}})
    assert p.rounds == 3 and p.round_trials(3) == [5] and p.fixed == {"kl_weight": 1}


@pytest.mark.parametrize("search, needle", [
    ({"space": {"not_a_param": [1, 2]}}, "methods.sysvi.search.space.not_a_param: unknown parameter"),
    ({"space": {}}, "methods.sysvi.search.space: the space is empty"),
    ({"space": {"kl_weight": []}}, "methods.sysvi.search.space.kl_weight: the list of values is empty"),
    ({"n_trials": 0}, "methods.sysvi.search.n_trials: expected an integer >= 1, got 0"),
    ({"n_trials": 10}, "methods.sysvi.search.n_trials: 10 trials but the space has only 9 settings"),
    ({"sampler": "grid"}, "methods.sysvi.search.sampler: 'grid' is unknown; known: tpe"),
    ({"space": {"kl_weight": {"low": 2, "high": 1}}}, "methods.sysvi.search.space.kl_weight: low (2) must be below high (1)"),
    ({"space": {"kl_weight": {"low": 0, "high": 1, "log": True}}}, "methods.sysvi.search.space.kl_weight: a log range needs low > 0"),
    ({"rounds": 3}, "methods.sysvi.search: unknown key(s) rounds"),
])
def test_bad_search_block_names_the_key(search, needle):
    with pytest.raises(ConfigError) as err:
        plan(**search)
    assert str(err.value).startswith(needle) and "\n" not in str(err.value)


def test_same_seed_proposes_the_same_settings_and_another_seed_others():
    first, again = run_search(plan(seed=0)), run_search(plan(seed=0))
    assert first == again
    assert run_search(plan(seed=1)) != first


def test_a_round_is_a_function_of_the_scores_told():
    p = plan(seed=0)
    round1 = ask_round(p, [], 1)
    told = [{"values": t["values"], "score": toy_score(t["values"])} for t in round1]
    reversed_scores = [{"values": t["values"], "score": -toy_score(t["values"])} for t in round1]
    assert ask_round(p, told, 2) == ask_round(p, told, 2)
    assert [t["trial"] for t in ask_round(p, told, 2)] == [4, 5, 6]
    # TPE models the scores: other scores of the same settings, other proposals
    assert [t["values"] for t in ask_round(p, told, 2)] != [t["values"] for t in ask_round(p, reversed_scores, 2)]


def test_trials_are_new_settings_of_the_space_named_as_trials():
    p = plan(seed=3)
    values = run_search(p)
    assert len({tuple(sorted(v.items())) for v in values}) == 9  # the whole 3 x 3 space, no repeat
    trial = ask_round(p, [], 1)[0]
    assert trial["setting"].startswith("search-t01__cycle_weight-") and trial["params"] == trial["values"]


def test_failed_trials_are_told_as_failures_and_ranges_are_sampled_inside():
    p = search_plan("sysvi", {"search": {"space": {"kl_weight": {"low": 0.5, "high": 5.0, "log": True},
                                                   "n_prior_components": {"low": 2, "high": 20}},
                                         "n_trials": 6, "trials_per_round": 3}})
    round1 = ask_round(p, [], 1)
    told = [{"values": t["values"], "score": None if i == 0 else 0.5} for i, t in enumerate(round1)]
    for t in round1 + ask_round(p, told, 2):
        assert 0.5 <= t["values"]["kl_weight"] <= 5.0
        assert isinstance(t["values"]["n_prior_components"], int) and 2 <= t["values"]["n_prior_components"] <= 20


def test_fixed_score_is_the_unscaled_composite_and_best_so_far_only_grows():
    metrics = {"nmi": 0.8, "ari": 0.6, "ilisi": 0.2, "kbet": None}
    assert fixed_score(metrics, ["nmi", "ari"], ["ilisi", "kbet"], 0.6) == pytest.approx(0.6 * 0.7 + 0.4 * 0.2)
    rows = with_best_so_far([{"score": s, "n_seeds": 2} for s in (0.3, None, 0.5, 0.4)])
    assert [r["best_so_far"] for r in rows] == [0.3, 0.3, 0.5, 0.5] and [r["runs"] for r in rows] == [2, 4, 6, 8]


def search_tsv():
    rows = []
    grid_scores = [0.30, 0.50, 0.40, 0.60]  # grid's best at its 4th run
    search_scores = [0.40, 0.60, 0.35, 0.45]  # search reaches the same setting at its 2nd run
    values = [(2, 1), (2, 5), (10, 1), (10, 5)]
    found = [(10, 1), (10, 5), (2, 1), (2, 5)]
    for arm, scores, vals in (("grid", grid_scores, values), ("search", search_scores, found)):
        best = -np.inf
        for i, (score, (cw, kl)) in enumerate(zip(scores, vals), start=1):
            best = max(best, score)
            rows.append({"dataset": "d", "method": "sysvi", "arm": arm, "round": np.nan if arm == "grid" else i,
                         "trial": i, "setting": f"{arm}{i}", "cycle_weight": cw, "kl_weight": kl, "n_seeds": 1,
                         "n_failed": 0, "score": score, "best_so_far": best, "runs": i})
    return pd.DataFrame(rows)


def test_report_compares_grid_and_search_at_equal_runs():
    from reports.search import comparison

    row = comparison(search_tsv()).iloc[0]
    assert row["grid best"] == "cycle_weight=10, kl_weight=5" == row["search best"]
    assert row["runs each"] == 4 and row["grid: runs to its best"] == 4
    assert row["grid: runs to its best, random order (mean)"] == pytest.approx(2.5)
    assert row["search: runs to the grid's best score"] == 2
    assert row["search found the grid's best setting"] == "yes"


def test_trajectory_figure_renders(tmp_path):
    from reports.render import save_plot
    from reports.search import fig_search_trajectory

    png, _ = save_plot(fig_search_trajectory(search_tsv()), tmp_path, "search_trajectory")
    assert png.stat().st_size > 10_000


def test_bad_search_block_stops_the_plan_with_one_line(tmp_path):
    from test_e2e import REPO, study_env

    cfg = yaml.safe_load((REPO / "config/search.yaml").read_text())
    cfg["out"] = str(tmp_path / "out")
    cfg["methods"]["sysvi"]["search"]["space"] = {"cycle_weight": [2, 10], "kl_wieght": [1, 2]}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"),
                          "--configfile", str(tmp_path / "config.yaml"), "--directory", str(tmp_path), "-n"],
                         env=study_env(), capture_output=True, text=True, timeout=300)
    assert res.returncode != 0
    lines = [line for line in (res.stdout + res.stderr).splitlines() if "kl_wieght" in line]
    assert lines == ["invalid config: methods.sysvi.search.space.kl_wieght: unknown parameter 'kl_wieght' of "
                     "sysvi; known: " + lines[0].split("known: ")[1]], res.stderr[-2000:]
