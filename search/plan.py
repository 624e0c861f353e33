"""A method's ``search:`` block, checked at plan time, and the names of its trials.

    search:
      sampler: tpe            # Optuna's TPESampler (the only one)
      seed: 0                 # the sampler's seed: the same seed proposes the same settings
      n_trials: 9             # default: the number of grid settings (equal budgets)
      trials_per_round: 3     # default: n_trials / 3 rounded up (three rounds)
      startup_trials: 3       # trials drawn at random before TPE models the scores (default: one round)
      space:                  # default: the grid's values, as categories
        cycle_weight: [2, 10, 50]              # categorical
        kl_weight: {low: 0.5, high: 5, log: true}  # a range (integers when low and high are)

A trial's setting is ``search-t03__cycle_weight-10__kl_weight-2``: the trial number, then the
searched values as in a grid setting's name, so a trial is never confused with a grid setting
even where it has the same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from methods import registry
from methods.settings import ConfigError, slug

SAMPLERS = ("tpe",)
TRIAL_PREFIX = "search-t"


@dataclass(frozen=True)
class SearchPlan:
    """One method's search: its space and budget. ``space`` maps a parameter to a list of values
    (categorical) or a dict {low, high, log} (a range)."""

    method: str
    space: dict[str, Any]
    fixed: dict[str, Any] = field(default_factory=dict)
    sampler: str = "tpe"
    seed: int = 0
    n_trials: int = 1
    trials_per_round: int = 1
    startup_trials: int = 1

    @property
    def rounds(self) -> int:
        return math.ceil(self.n_trials / self.trials_per_round)

    def round_trials(self, round_no: int) -> list[int]:
        """Trial numbers (from 1) asked in round ``round_no`` (from 1)."""
        first = (round_no - 1) * self.trials_per_round + 1
        return list(range(first, min(first + self.trials_per_round, self.n_trials + 1)))

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "space": self.space, "fixed": self.fixed, "sampler": self.sampler,
                "seed": self.seed, "n_trials": self.n_trials, "trials_per_round": self.trials_per_round,
                "startup_trials": self.startup_trials}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchPlan:
        return cls(**data)


def trial_setting(trial: int, values: dict[str, Any]) -> str:
    """The setting name of search trial ``trial`` with the searched ``values``."""
    return f"{TRIAL_PREFIX}{trial:02d}__{slug(values)}"


def is_trial_setting(setting: str) -> bool:
    return setting.startswith(TRIAL_PREFIX)


def space_size(space: dict[str, Any]) -> float:
    """Number of distinct settings of the space (inf when a parameter is a float range)."""
    size = 1.0
    for dim in space.values():
        if isinstance(dim, list):
            size *= len(dim)
        elif isinstance(dim["low"], int) and isinstance(dim["high"], int) and not dim.get("log"):
            size *= dim["high"] - dim["low"] + 1
        else:
            return math.inf
    return size


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_range(where: str, dim: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(dim) - {"low", "high", "log"})
    if unknown or "low" not in dim or "high" not in dim:
        raise ConfigError(f"{where}: a range is {{low, high, log}}, got {dim!r}")
    low, high, log = dim["low"], dim["high"], dim.get("log", False)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)):
        raise ConfigError(f"{where}: low and high must be numbers, got {low!r} and {high!r}")
    if not isinstance(log, bool):
        raise ConfigError(f"{where}.log: expected true or false, got {log!r}")
    if not low < high:
        raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
    if log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    return {"low": low, "high": high, "log": log}


def search_plan(method: str, section: dict[str, Any] | None) -> SearchPlan | None:
    """The checked search of one method section (None without a ``search:`` block); a problem
    raises ConfigError with one line naming the key, the value and what to do."""
    section = section or {}
    block = section.get("search")
    if block is None:
        return None
    where = f"methods.{method}.search"
    if not isinstance(block, dict):
        raise ConfigError(f"{where}: expected a mapping (sampler, seed, n_trials, space, ...), got {block!r}")
    unknown = sorted(set(block) - {"sampler", "seed", "n_trials", "trials_per_round", "startup_trials", "space"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: sampler, seed, n_trials, "
                          "trials_per_round, startup_trials, space")
    spec = registry.get(method)
    grid = section.get("grid") or {}
    space = block.get("space", grid)
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}.space: the space is empty; give space: {{parameter: [values] or "
                          f"{{low, high, log}}}} or a grid: to search")
    checked: dict[str, Any] = {}
    for name, dim in space.items():
        key = f"{where}.space.{name}"
        if name not in spec.defaults:
            raise ConfigError(f"{key}: unknown parameter '{name}' of {method}; known: "
                              f"{', '.join(sorted(spec.defaults)) or '(none)'}")
        if isinstance(dim, list):
            if not dim:
                raise ConfigError(f"{key}: the list of values is empty; give at least one value")
            for value in dim:
                problem = registry.value_problem(spec.defaults[name], value)
                if problem:
                    raise ConfigError(f"{key}: {problem}")
            checked[name] = list(dim)
        elif isinstance(dim, dict):
            checked[name] = _check_range(key, dim)
            for value in (checked[name]["low"], checked[name]["high"]):
                problem = registry.value_problem(spec.defaults[name], value)
                if problem:
                    raise ConfigError(f"{key}: {problem}")
        else:
            raise ConfigError(f"{key}: expected a list of values or {{low, high, log}}, got {dim!r}")
    fixed = dict(section.get("params") or {})
    overlap = sorted(set(fixed) & set(checked))
    if overlap:
        raise ConfigError(f"{where}.space: {', '.join(overlap)} is fixed in methods.{method}.params; "
                          "search it or fix it, not both")
    sampler = block.get("sampler", "tpe")
    if sampler not in SAMPLERS:
        raise ConfigError(f"{where}.sampler: '{sampler}' is unknown; known: {', '.join(SAMPLERS)}")
    default_trials = math.prod(len(v) for v in grid.values()) if grid else None
    n_trials = block.get("n_trials", default_trials)
    if n_trials is None:
        raise ConfigError(f"{where}.n_trials: no grid to take the budget from; give n_trials")
    for key, value in (("n_trials", n_trials), ("seed", block.get("seed", 0))):
        if not _is_int(value) or value < (1 if key == "n_trials" else 0):
            raise ConfigError(f"{where}.{key}: expected an integer >= {1 if key == 'n_trials' else 0}, "
                              f"got {value!r}")
    size = space_size(checked)
    if n_trials > size:
        raise ConfigError(f"{where}.n_trials: {n_trials} trials but the space has only {int(size)} settings; "
                          f"give n_trials <= {int(size)} or a larger space")
    per_round = block.get("trials_per_round", math.ceil(n_trials / 3))
    startup = block.get("startup_trials", per_round)
    for key, value in (("trials_per_round", per_round), ("startup_trials", startup)):
        if not _is_int(value) or value < 1:
            raise ConfigError(f"{where}.{key}: expected an integer >= 1, got {value!r}")
    return SearchPlan(method=method, space=checked, fixed=fixed, sampler=sampler, seed=block.get("seed", 0),
                      n_trials=n_trials, trials_per_round=min(per_round, n_trials), startup_trials=startup)
