"""YAML files whose keys must be unique: a key given twice is an error naming the file and line.

PyYAML (and Snakemake's config loading) keep the last of two equal keys, so a second
``harmony:`` under ``methods:`` silently replaced the first one's grid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


class DuplicateKeyError(ValueError):
    """A mapping in a YAML file gives the same key twice; the message names file, line and key."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping."""

    source = "<string>"

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: SafeLoader reports it itself
                continue
            if first is not None:
                raise DuplicateKeyError(
                    f"{self.source} line {key_node.start_mark.line + 1}: key '{key}' is given twice in one "
                    f"section (first on line {first}); YAML would keep only the last one: remove or merge one")
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_unique(path: str | Path) -> Any:
    """The YAML (or JSON) document in ``path``; ``DuplicateKeyError`` when a mapping repeats a key,
    ``yaml.YAMLError`` when it does not parse, ``OSError`` when it cannot be read."""
    text = Path(path).read_text(encoding="utf-8")
    loader = _UniqueKeyLoader(text)
    loader.source = str(path)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
