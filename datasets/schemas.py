"""The workflow's JSON schemas (workflow/schemas/*.schema.yaml) and their errors as one line.

``first_problem(schema, document)`` validates ``document`` and returns the first violation as
(path, problem): path is the list of keys and list indices down to the bad value, problem a
phrase a user can act on ("must be an http:// or https:// URL, got 'ftp://x'", "is missing",
"unknown key (allowed: ...)"). jsonschema's own messages name neither the field that is missing
nor what a pattern means, so the phrase is built from the schema: a rule across fields says its
line in ``x-message`` (and the field it is about in ``x-field``), a value what it must be in
``x-expected`` (or in ``description``, in a schema that says ``x-descriptions-say-expected``);
otherwise jsonschema's message is used ("0 is less than the minimum of 1"). Schemas refer to each other by file name (``registry.schema.yaml#/$defs/...``).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "workflow" / "schemas"
SHOWN_CHARS = 80  # how much of a bad value a message quotes


@functools.cache
def _registry() -> Registry:
    """Every schema file under its file:// URI, so that relative $refs between them resolve."""
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.schema.yaml")):
        contents = yaml.safe_load(path.read_text())
        contents.setdefault("$id", path.resolve().as_uri())
        resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@functools.cache
def _describing_nodes() -> frozenset[int]:
    """ids of the schema objects of files flagged ``x-descriptions-say-expected`` (also when another
    schema reaches them by $ref)."""
    ids: set[int] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ids.add(id(node))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for path in SCHEMA_DIR.glob("*.schema.yaml"):
        contents = _registry().contents(path.resolve().as_uri())
        if contents.get("x-descriptions-say-expected"):
            walk(contents)
    return frozenset(ids)


def load_schema(name: str) -> dict:
    """The schema ``workflow/schemas/<name>.schema.yaml`` (with its file:// ``$id``)."""
    return _registry().contents((SCHEMA_DIR / f"{name}.schema.yaml").resolve().as_uri())


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "..."


# schema keywords whose subschema applies to a child of the instance (one level deeper)
_CHILD_KEYWORDS = {"properties", "additionalProperties", "patternProperties", "items", "prefixItems",
                   "propertyNames"}


def _ancestors(error: jsonschema.ValidationError, root: dict) -> list[tuple[dict, int]]:
    """(schema object, depth of the instance it applies to) from ``root`` down to the failing
    keyword's schema, following $refs."""
    resolver = _registry().resolver(root.get("$id", ""))
    path = list(error.absolute_schema_path)[:-1]
    out, node, depth, i = [(root, 0)], root, 0, 0
    while i < len(path):
        key = path[i]
        # jsonschema leaves a $ref out of the schema path when the keyword sits in its target
        if isinstance(node, dict) and "$ref" in node and (key == "$ref" or key not in node):
            resolved = resolver.lookup(node["$ref"])
            resolver, node = resolved.resolver, resolved.contents
            i += key == "$ref"
            continue
        node = node[key]
        if key in _CHILD_KEYWORDS:
            depth += 1
            if key in ("properties", "patternProperties", "prefixItems"):  # the next key names the child
                node = node[path[i + 1]]
                i += 1
        if isinstance(node, dict):
            out.append((node, depth))
        i += 1
    return out


def _problem(error: jsonschema.ValidationError, root: dict, noun: str) -> tuple[list, str]:
    """(path, problem phrase) of one jsonschema error."""
    path = list(error.absolute_path)
    ancestors = _ancestors(error, root)
    ruled = next(((n, d) for n, d in reversed(ancestors) if "x-message" in n), None)
    if ruled is not None:
        node, depth = ruled
        return path[:depth] + ([node["x-field"]] if "x-field" in node else []), node["x-message"]
    here = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "required":
        missing = re.match(r"'([^']+)' is a required property", error.message)
        return path + [missing.group(1) if missing else "?"], "is missing"
    if error.validator == "additionalProperties":
        allowed = sorted(here.get("properties") or {})
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        hint = f" (allowed: {', '.join(allowed)})" if allowed else ""
        return path + extra[:1], f"unknown {noun}{hint}"
    if error.validator == "propertyNames":
        names = here.get("propertyNames", {})
        described = names.get("x-expected") or names.get("description", "")
        return path + [error.instance], f"the name must be {described}" if described else error.message
    if error.validator == "uniqueItems" and isinstance(error.instance, list):
        seen: list = []
        repeated = next((v for v in error.instance if v in seen or seen.append(v)), None)
        return path, f"{_shown(repeated)} is given twice: list each value once"
    expected = here.get("x-expected") or (here.get("description") if id(here) in _describing_nodes() else None)
    if expected and error.validator in ("type", "pattern", "enum", "const", "minimum", "maximum",
                                        "exclusiveMinimum", "exclusiveMaximum", "minLength", "minItems",
                                        "maxItems", "minProperties", "anyOf", "oneOf", "not"):
        return path, f"must be {expected}, got {_shown(error.instance)}"
    return path, error.message


def first_problem(name: str, document: Any, noun: str = "key") -> tuple[list, str] | None:
    """The first violation of schema ``name`` by ``document`` as (path, problem), else None.

    "First" is the shallowest path, then document order, so that an entry's own keys are
    reported before the keys inside them. ``noun`` names a key in "unknown <noun>".
    """
    schema = load_schema(name)
    validator = jsonschema.Draft202012Validator(schema, registry=_registry())
    errors = list(validator.iter_errors(document))
    if not errors:
        return None
    error = min(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
    return _problem(error, schema, noun)


def dotted(path: list) -> str:
    """['datasets', 'x', 'parts', 0, 'batch'] -> 'datasets.x.parts[0].batch'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
