"""Your own method, named in the config: run, scored and reported like the built-in ones.

    methods:
      my_pca:
        module: my_methods/my_pca.py    # a .py file (relative: to the config file's folder) or a module name
        params: {n_comps: 20}
        grid: {whiten: [false, true]}

The module exposes ``integrate(adata, *, batch_key, label_key, params, seed, device) ->
IntegrationResult`` (methods/base.py) and may describe itself in a module-level ``SPEC`` dict
(a literal) with the keys of ``SPEC_KEYS``; the same keys in the config win. At plan time the
module is not imported (it may import torch, or fail): ``SPEC`` is read from the source with
``ast``, and ``integrate`` looked for there, so a wrong path or a missing function is one line
at start. The runner gets the resulting ``MethodSpec`` on its command line (``--external``),
registers it and imports the file (methods/registry.py ``load_module``).
"""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from typing import Any

from methods.registry import INPUTS, OUTPUTS, MethodSpec

SPEC_KEYS = ("output", "input", "gpu", "supervised", "env", "defaults", "description")
SPEC_DEFAULTS: dict[str, Any] = {"input": "lognorm", "gpu": False, "supervised": False, "env": "data",
                                 "defaults": {}, "description": ""}


CALL_KEYWORDS = ("batch_key", "label_key", "params", "seed", "device")  # what the runner passes
SIGNATURE = "integrate(adata, *, batch_key, label_key, params, seed, device)"


class ExternalMethodError(ValueError):
    """Your own method cannot be used as configured; the message names the config key."""


def module_file(module: str, base_dir: Path) -> tuple[Path, str]:
    """(source file, what the runner imports) of a .py path or an importable module name."""
    if module.endswith(".py") or "/" in module:
        path = Path(module).expanduser()
        path = (path if path.is_absolute() else base_dir / path).resolve()
        if not path.is_file():
            raise ExternalMethodError(f"{path} does not exist (a relative path is relative to {base_dir})")
        return path, str(path)
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError) as exc:
        found, why = None, f": {exc}"
    else:
        why = ""
    if found is None or not found.origin or not found.origin.endswith(".py"):
        raise ExternalMethodError(f"cannot find the Python module '{module}'{why}; put its folder on PYTHONPATH "
                                  "or name its .py file")
    return Path(found.origin), module


def read_source(path: Path) -> tuple[dict, bool, ast.FunctionDef | ast.AsyncFunctionDef | None]:
    """(the module-level SPEC literal, whether the module defines or imports ``integrate``, its
    definition when the module defines it)."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError, ValueError) as exc:
        raise ExternalMethodError(f"cannot read {path} as Python: {exc}") from None
    spec: Any = {}
    has_integrate, definition = False, None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "integrate":
            has_integrate, definition = True, node
        elif isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == "integrate" for a in node.names):
            has_integrate = True
        targets = node.targets if isinstance(node, ast.Assign) else \
            [node.target] if isinstance(node, ast.AnnAssign) and node.value is not None else []
        names = {t.id for t in targets if isinstance(t, ast.Name)}
        has_integrate |= "integrate" in names
        if "SPEC" in names:
            try:
                spec = ast.literal_eval(node.value)
            except ValueError:
                raise ExternalMethodError(f"{path}: SPEC must be a literal dict (no names or calls in it)") from None
    if not isinstance(spec, dict):
        raise ExternalMethodError(f"{path}: SPEC must be a dict, got {type(spec).__name__}")
    return spec, has_integrate, definition


def check_signature(node: ast.FunctionDef | ast.AsyncFunctionDef, path: Path) -> None:
    """``integrate`` takes the data first and the keywords the runner passes (or ``**kwargs``):
    otherwise every run would fail with a TypeError."""
    args = node.args
    positional = args.posonlyargs + args.args
    if not positional and args.vararg is None:
        raise ExternalMethodError(f"{path}: integrate() takes no argument for the data; define it as {SIGNATURE}")
    if args.kwarg is not None:
        return
    names = {a.arg for a in args.args[1:] + args.kwonlyargs} if args.args else {a.arg for a in args.kwonlyargs}
    missing = [k for k in CALL_KEYWORDS if k not in names]
    if missing:
        raise ExternalMethodError(f"{path}: integrate() does not take the keyword argument(s) {', '.join(missing)}; "
                                  f"define it as {SIGNATURE}")


def _env(value: str, base_dir: Path, env_dir: Path) -> str:
    """A conda env: the name of a file in ``env_dir`` or a path to an env .yaml (absolute)."""
    if value.endswith((".yaml", ".yml")):
        path = Path(value).expanduser()
        path = (path if path.is_absolute() else base_dir / path).resolve()
        if not path.is_file():
            raise ExternalMethodError(f"env file {path} does not exist")
        return str(path)
    if not (env_dir / f"{value}.yaml").is_file():
        known = sorted(p.stem for p in env_dir.glob("*.yaml"))
        raise ExternalMethodError(f"env '{value}' is not in {env_dir} ({', '.join(known)}); "
                                  "or give an env .yaml file")
    return value


def _check_values(merged: dict) -> None:
    """Values from SPEC are not schema-checked like the config's: check them here."""
    if merged.get("output") not in OUTPUTS:
        raise ExternalMethodError(f"output must be one of {', '.join(OUTPUTS)} (in the config or the "
                                  f"module's SPEC), got {merged.get('output')!r}")
    if merged["input"] not in INPUTS:
        raise ExternalMethodError(f"input must be one of {', '.join(INPUTS)}, got {merged['input']!r}")
    for key in ("gpu", "supervised"):
        if not isinstance(merged[key], bool):
            raise ExternalMethodError(f"{key} must be true or false, got {merged[key]!r}")
    if not isinstance(merged["defaults"], dict):
        raise ExternalMethodError(f"defaults must be a mapping of parameter -> default, got {merged['defaults']!r}")
    if not isinstance(merged["env"], str) or not isinstance(merged["description"], str):
        raise ExternalMethodError("env and description must be strings")


def external_spec(name: str, section: dict, base_dir: Path, env_dir: Path) -> MethodSpec:
    """The MethodSpec of ``methods.<name>`` with a ``module``; ``ExternalMethodError`` otherwise."""
    try:
        path, module = module_file(section["module"], base_dir)
        spec, has_integrate, definition = read_source(path)
        if not has_integrate:
            raise ExternalMethodError(f"{path} defines no integrate(adata, *, batch_key, label_key, params, seed, "
                                      "device) (see methods/base.py)")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise ExternalMethodError(f"{path}: SPEC has unknown key(s) {', '.join(unknown)}; "
                                      f"known: {', '.join(SPEC_KEYS)}")
        merged = {**SPEC_DEFAULTS, **spec, **{k: section[k] for k in SPEC_KEYS if k in section}}
        _check_values(merged)
        env_base = base_dir if "env" in section else path.parent
        merged["env"] = _env(merged["env"], env_base, env_dir)
        if definition is not None:
            check_signature(definition, path)
    except ExternalMethodError as exc:
        raise ExternalMethodError(f"methods.{name}.module: {exc}") from None
    return MethodSpec(module=module, external=True, **merged)
