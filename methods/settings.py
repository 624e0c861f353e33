"""Expand a study's method section into named settings (hyperparameter combinations).

A setting is a parameter dict plus a readable, stable slug (``cycle_weight-5``,
``kl_weight-1.5__n_prior_components-5``; ``default`` when nothing varies). The slug names
only what is set in the config for that setting, so adding a new default to a method does
not rename existing runs.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from methods import registry

_SLUG_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ConfigError(ValueError):
    """A study configuration problem; the message names the config key."""


def format_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "+".join(format_value(v) for v in value)
    return _SLUG_SAFE.sub("_", str(value))


def slug(varying: dict[str, Any]) -> str:
    if not varying:
        return "default"
    return "__".join(f"{k}-{format_value(varying[k])}" for k in sorted(varying))


def expand_settings(method: str, section: dict[str, Any] | None) -> list[tuple[str, dict[str, Any]]]:
    """[(slug, params)] for one method's config section; params exclude registry defaults."""
    section = section or {}
    where = f"methods.{method}"
    try:
        spec = registry.get(method)
    except KeyError as exc:
        raise ConfigError(f"{where}: {exc.args[0]}") from None
    fixed = dict(section.get("params") or {})
    grid = dict(section.get("grid") or {})
    explicit = list(section.get("settings") or [])
    for key, values in [("params", fixed), ("grid", grid)] + [(f"settings[{i}]", s) for i, s in enumerate(explicit)]:
        if not isinstance(values, dict):
            raise ConfigError(f"{where}.{key}: expected a mapping of parameter -> value, got {values!r}")
        unknown = sorted(set(values) - set(spec.defaults))
        if unknown:
            raise ConfigError(
                f"{where}.{key}: unknown parameter(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(spec.defaults)) or '(none)'}"
            )
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{where}.grid.{key}: expected a non-empty list of values, got {values!r}")
    given = [(f"params.{k}", v) for k, v in fixed.items()]
    given += [(f"grid.{k}", v) for k, values in grid.items() for v in values]
    given += [(f"settings[{i}].{k}", v) for i, s in enumerate(explicit) for k, v in s.items()]
    for key, value in given:
        problem = registry.value_problem(spec.defaults[key.rsplit(".", 1)[1]], value)
        if problem:
            raise ConfigError(f"{where}.{key}: {problem}")
    out: list[tuple[str, dict[str, Any]]] = []
    keys = sorted(grid)
    for combo in itertools.product(*(grid[k] for k in keys)):
        varying = dict(zip(keys, combo))
        out.append((slug(varying), {**fixed, **varying}))
    if explicit:
        if not grid:
            out = []
        out.extend((slug(s), {**fixed, **s}) for s in explicit)
    seen: dict[str, dict] = {}
    for name, params in out:
        if name in seen and seen[name] != params:
            raise ConfigError(f"{where}: two settings share the name '{name}'")
        seen[name] = params
    return list(seen.items())


def with_label_missing(method: str, settings: list[tuple[str, dict]], fractions: list[float]
                       ) -> list[tuple[str, dict, float]]:
    """Supervised methods get one setting per hidden-label share; others share 0."""
    if not registry.get(method).supervised:
        return [(name, params, 0.0) for name, params in settings]
    out = []
    for name, params in settings:
        for frac in fractions or [0.0]:
            frac = float(frac)
            if frac == 0:
                out.append((name, params, 0.0))
            else:
                base = "" if name == "default" else name + "__"
                out.append((f"{base}label_missing-{frac:g}", params, frac))
    return out


def base_setting(setting: str, label_missing: float) -> str:
    """The fully labelled setting that a hidden-label run's setting was made from (the inverse
    of ``with_label_missing``'s naming); ``setting`` itself for a fully labelled run."""
    if not label_missing:
        return setting
    suffix = f"label_missing-{float(label_missing):g}"
    if setting == suffix:
        return "default"
    return setting.removesuffix(f"__{suffix}")
