"""The ask step of a search round: Optuna's TPE proposes the next settings from the scored trials.

A pure function of (plan, scored trials, round): each round re-creates an in-memory study from the
recorded trials and a TPESampler seeded from (seed, round), so a rerun of a round proposes the
same settings, and no Optuna database outlives the files the workflow already keeps.

A proposal equal to a setting already run (or asked earlier in the round) is not run again: the
study is told that setting's score (or a failure when it has none yet) and asked again, so each
trial of the budget is a new setting.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState

from search.plan import SearchPlan, trial_setting

MAX_ASKS_PER_TRIAL = 1000  # proposals tried before a round gives up finding a setting not yet run

optuna.logging.set_verbosity(logging.WARNING)


class SearchExhausted(RuntimeError):
    """TPE kept proposing settings already run."""


def round_seed(seed: int, round_no: int) -> int:
    """The sampler seed of one round (differs per round, so random start-up rounds differ)."""
    return int(np.random.SeedSequence([seed, round_no]).generate_state(1)[0])


def distributions(space: dict[str, Any]) -> dict[str, BaseDistribution]:
    """Optuna distributions of the space; a categorical parameter is searched over value indices
    (the values may be lists or nulls, which Optuna's categories do not take)."""
    out: dict[str, BaseDistribution] = {}
    for name, dim in space.items():
        if isinstance(dim, list):
            out[name] = CategoricalDistribution(list(range(len(dim))))
        elif isinstance(dim["low"], int) and isinstance(dim["high"], int):
            out[name] = IntDistribution(dim["low"], dim["high"], log=dim["log"])
        else:
            out[name] = FloatDistribution(float(dim["low"]), float(dim["high"]), log=dim["log"])
    return out


def to_optuna(space: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    return {k: space[k].index(v) if isinstance(space[k], list) else v for k, v in values.items()}


def from_optuna(space: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    return {k: space[k][params[k]] if isinstance(space[k], list) else params[k] for k in sorted(space)}


def key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def ask_round(plan: SearchPlan, scored: list[dict[str, Any]], round_no: int) -> list[dict[str, Any]]:
    """The trials of round ``round_no``: [{trial, setting, values, params}].

    ``scored``: the trials of the earlier rounds in trial order, each {"values": searched values,
    "score": float, or None when its runs failed}.
    """
    dists = distributions(plan.space)
    sampler = optuna.samplers.TPESampler(seed=round_seed(plan.seed, round_no),
                                         n_startup_trials=plan.startup_trials)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    seen: dict[str, float | None] = {}
    for t in scored:
        ok = t["score"] is not None and np.isfinite(t["score"])
        study.add_trial(optuna.trial.create_trial(
            params=to_optuna(plan.space, t["values"]), distributions=dists,
            state=TrialState.COMPLETE if ok else TrialState.FAIL, value=t["score"] if ok else None))
        seen[key(t["values"])] = t["score"] if ok else None
    out = []
    for trial in plan.round_trials(round_no):
        for _ in range(MAX_ASKS_PER_TRIAL):
            asked = study.ask(dists)
            values = from_optuna(plan.space, asked.params)
            if key(values) not in seen:
                break  # left running: TPE's constant liar counts it while the round asks on
            known = seen[key(values)]
            study.tell(asked, known) if known is not None else study.tell(asked, state=TrialState.FAIL)
        else:
            raise SearchExhausted(f"methods.{plan.method}.search: round {round_no}: {MAX_ASKS_PER_TRIAL} "
                                  "proposals were all settings already run; give a larger space or fewer n_trials")
        seen[key(values)] = None
        out.append({"trial": trial, "setting": trial_setting(trial, values), "values": values,
                    "params": {**plan.fixed, **values}})
    return out
