"""The dataset registry (config/datasets.yaml): read and validated against its JSON schema.

``load_registry(path)`` returns name -> entry with the optional fields filled in; every problem
is a ``RegistryError`` of one line naming the registry file, the entry and the field
(workflow/schemas/registry.schema.yaml holds the rules and the phrases). ``validate_entry``
checks one entry the same way; the config's ``file:`` datasets go through it too
(datasets/local_file.py), so a local file is held to the rules of a downloaded one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from datasets.schemas import dotted, first_problem

OPTIONAL_FIELDS: dict[str, Any] = {"derive": None, "parts": None, "bundled": None, "genome": None, "path": None}
PART_OPTIONAL: dict[str, Any] = {"mirrors": [], "sha256": None, "size": None}


class RegistryError(ValueError):
    """A registry entry is missing a field or has a malformed value."""


def _fail(where: str, name: str | None, field: str | None, problem: str) -> RegistryError:
    """A RegistryError naming the registry file, the entry and the field."""
    at = ", ".join(filter(None, [f"entry '{name}'" if name is not None else None,
                                 f"field '{field}'" if field else None]))
    return RegistryError(f"{where}: {at + ': ' if at else ''}{problem}")


def _check(where: str, document: Any) -> None:
    """Raise the first schema violation of a registry document as a RegistryError."""
    found = first_problem("registry", document, noun="field")
    if found is None:
        return
    path, problem = found
    if len(path) < 2:  # the document or its 'datasets' mapping itself
        raise _fail(where, None, dotted(path) or None, problem)
    raise _fail(where, str(path[1]), dotted(path[2:]) or None, problem)


def _filled(entry: dict) -> dict:
    """A copy of a valid entry with the optional fields (and those of its parts) filled in."""
    out = {**OPTIONAL_FIELDS, **entry}
    if out["parts"] is not None:
        out["parts"] = [{**PART_OPTIONAL, **part} for part in out["parts"]]
    return out


def validate_entry(name: Any, entry: Any, where: str = "dataset registry") -> dict:
    """Check one registry entry and return a copy with the optional fields filled in.

    Raises ``RegistryError`` naming ``where`` (the registry file), the entry and the field.
    References between entries (``derive.from``) are checked by ``load_registry``.
    """
    _check(where, {"datasets": {name: entry}})
    return _filled(entry)


def _check_derive_graph(where: str, entries: dict[str, dict]) -> None:
    """Every ``derive.from`` names an entry; no entry derives from itself, directly or not."""
    for name, entry in entries.items():
        seen = [name]
        current = entry
        while current["derive"] is not None:
            source = current["derive"]["from"]
            if source not in entries:
                raise _fail(where, name, "derive.from", f"names no entry of the registry: {source!r}")
            if source in seen:
                raise _fail(where, name, "derive.from", f"derivation cycle {' -> '.join(seen + [source])}")
            seen.append(source)
            current = entries[source]


def load_registry(path: str | Path) -> dict[str, dict]:
    """Read and validate the dataset registry (``datasets: {name: entry}``); return name -> entry."""
    path = Path(path)
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as err:
        raise RegistryError(f"{path}: cannot read the dataset registry: {err}") from err
    except yaml.YAMLError as err:
        raise RegistryError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from err
    _check(str(path), document)
    entries = {name: _filled(entry) for name, entry in document["datasets"].items()}
    _check_derive_graph(str(path), entries)
    return entries
