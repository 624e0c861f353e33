"""metrics.json writing: atomic, strict JSON (NaN/inf become null), numpy values converted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


def write_json_atomic(obj: dict, path: str | Path) -> None:
    """Write JSON to ``path`` via a temp name in the same folder, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w") as fh:
            json.dump(_finite(obj), fh, allow_nan=False, default=_json_default)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _finite(obj):
    """Non-finite floats -> None (JSON has no NaN), recursively."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
