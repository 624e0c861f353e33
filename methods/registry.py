"""Method registry: one entry per method. Cheap to import (no torch, no scanpy).

The Snakefile reads it at plan time (output type, GPU, conda env, parameter names for config
validation); the runner reads it to merge defaults and reject unknown parameters. Adding a
method = one module exposing ``integrate`` (see ``methods/base.py``) + one entry here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MethodSpec:
    module: str  # python module with integrate()
    output: str  # "embedding" | "graph" | "corrected"
    input: str  # "lognorm" (X) | "counts" (layers["counts"])
    env: str  # conda env file in envs/ (without .yaml)
    gpu: bool = False  # deep model: rule requests resources gpu=1, runs on CPU without one
    supervised: bool = False  # uses cell-type labels (label_missing applies)
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""


METHODS: dict[str, MethodSpec] = {
    # --- baselines ---
    "unintegrated": MethodSpec("methods.unintegrated", "embedding", "lognorm", "harmony",
                               defaults={"n_comps": 50}, description="PCA of the log-normalized HVGs"),
    "harmony": MethodSpec("methods.harmony", "embedding", "lognorm", "harmony",
                          defaults={"theta": 2.0, "n_comps": 50, "max_iter": 10},
                          description="Harmony on PCA (harmonypy)"),
    # --- end of methods ---
}


def get(name: str) -> MethodSpec:
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method '{name}'; known: {', '.join(sorted(METHODS))}") from None


def merge_params(name: str, params: dict[str, Any] | None) -> dict[str, Any]:
    """Registry defaults updated with ``params``; unknown keys are an error naming them."""
    spec = get(name)
    params = dict(params or {})
    unknown = sorted(set(params) - set(spec.defaults))
    if unknown:
        raise KeyError(
            f"method '{name}' has no parameter(s) {', '.join(unknown)}; "
            f"known: {', '.join(sorted(spec.defaults)) or '(none)'}"
        )
    return {**spec.defaults, **params}
