"""Conda environments: every env parses, every rule has one, and pins agree with pyproject."""

import ast
import functools
import os
import re
import subprocess
import sys
import types
from importlib import metadata
from pathlib import Path

import yaml

from methods import registry

REPO = Path(__file__).resolve().parents[1]
PINS = dict(re.findall(r'"([A-Za-z0-9_.-]+)==([^"]+)"', (REPO / "pyproject.toml").read_text()))


def env_files():
    return sorted((REPO / "envs").glob("*.yaml"))


def test_every_env_parses_and_pins_match_pyproject():
    assert len(env_files()) >= 8
    for path in env_files():
        env = yaml.safe_load(path.read_text())
        assert env["name"].startswith("ib-") and "conda-forge" in env["channels"], path.name
        pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
        for spec in pip:
            name, _, version = spec.partition("==")
            assert version, f"{path.name}: {spec} is not pinned"
            assert PINS.get(name) == version, f"{path.name}: {name}=={version} but pyproject pins {PINS.get(name)}"
        conda_pkgs = [d for d in env["dependencies"] if isinstance(d, str)]
        assert all("=" in d for d in conda_pkgs if d.split("=")[0] not in ("pip",)), path.name


def test_every_method_env_exists():
    for name, spec in registry.METHODS.items():
        assert (REPO / "envs" / f"{spec.env}.yaml").exists(), f"{name}: envs/{spec.env}.yaml missing"


def test_every_rule_has_a_conda_env_and_a_log():
    for smk in sorted((REPO / "workflow/rules").glob("*.smk")):
        text = smk.read_text()
        blocks = re.split(r"\n(?=[ \t]*rule\b)", text)
        for block in blocks[1:]:
            name = re.match(r"[ \t]*rule[ \t]*(\w*)", block).group(1) or "(generated)"
            if name == "all":
                continue
            assert "conda:" in block, f"{smk.name}: rule {name} has no conda env"
            assert "log:" in block, f"{smk.name}: rule {name} has no log"


# --- every module a rule's command imports is installed by that rule's env ------------------------

PROJECT_PACKAGES = {"methods", "datasets", "metrics", "reports", "cellgraph", "guards", "search"}


GUARD_TEST = re.compile(r"find_spec|sys\.modules")


def _guarded(parents: list[ast.AST]) -> bool:
    """An import that may be missing: inside try/except ImportError, or under a check of
    ``importlib.util.find_spec`` / ``sys.modules`` (e.g. torch in the runner, for CPU-only envs)."""
    for node in parents:
        if isinstance(node, ast.Try) and any(
                h.type is not None and any(isinstance(n, ast.Name) and n.id in ("ImportError", "ModuleNotFoundError")
                                           for n in ast.walk(h.type)) for h in node.handlers):
            return True
        if isinstance(node, ast.If) and GUARD_TEST.search(ast.unparse(node.test)):
            return True
    return False


def _returns_unless_imported(node: ast.AST) -> bool:
    """``if ... "torch" not in sys.modules: return`` guards the rest of its function."""
    return (isinstance(node, ast.If) and GUARD_TEST.search(ast.unparse(node.test)) is not None
            and isinstance(node.body[-1], ast.Return))


def _project_file(module: str) -> Path | None:
    """Source file of a project module, found without importing anything (importing would run the
    packages' own imports: seconds of numba compilation for the metrics)."""
    base = REPO.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if module.split(".")[0] in PROJECT_PACKAGES and path.is_file():
            return path
    return None


def _imports(module: str) -> list[str]:
    """Modules one project module imports anywhere (module level or in functions), unguarded."""
    path = _project_file(module)
    if path is None:
        return []
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found: list[str] = []

    def visit(node: ast.AST, parents: list[ast.AST]) -> None:
        if isinstance(node, ast.Import) and not _guarded(parents):
            found.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not _guarded(parents):
            base = ".".join(package[:len(package) - node.level + 1] + [node.module or ""]).strip(".") \
                if node.level else node.module
            for alias in node.names:  # "from methods import registry" imports the module methods.registry
                sub = f"{base}.{alias.name}"
                found.append(sub if _project_file(sub) else base)
        guard: list[ast.AST] = []
        for child in ast.iter_child_nodes(node):
            visit(child, [*parents, node, *guard])
            if _returns_unless_imported(child):
                guard = [child]

    visit(ast.parse(path.read_text()), [])
    return found


@functools.cache
def third_party_imports(entries: tuple[str, ...]) -> dict[str, str]:
    """Top-level third-party modules imported by ``entries`` and the project modules they import,
    transitively -> one project module that imports it (for the message)."""
    seen: set[str] = set()
    todo, found = list(entries), {}
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages run first
        for name in _imports(module):
            top = name.split(".")[0]
            if top in PROJECT_PACKAGES:
                todo.append(name)
            elif top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, module)
    return found


def _norm(dist: str) -> str:
    return re.sub(r"[-_.]+", "-", dist).lower()


@functools.cache
def env_provides(env_file: Path) -> set[str]:
    """Distributions an env installs: its conda and pip entries and, from this venv's metadata,
    everything those require (pins are exact, so the requirement graph is the env's)."""
    env = yaml.safe_load(env_file.read_text())
    listed = {_norm(re.split(r"[=<>]", d)[0]) for d in env["dependencies"] if isinstance(d, str)}
    for d in env["dependencies"]:
        if isinstance(d, dict):
            listed |= {_norm(re.split(r"[=<>\[]", p)[0]) for p in d["pip"]}
    provided, todo = set(), list(listed)
    while todo:
        dist = todo.pop()
        if dist in provided:
            continue
        provided.add(dist)
        try:
            requires = metadata.requires(dist) or []
        except metadata.PackageNotFoundError:
            continue
        todo.extend(_norm(re.split(r"[\s;<>=!~\[(]", r)[0]) for r in requires if "extra ==" not in r)
    return provided


def workflow_rules(workdir: Path):
    """The workflow's rules as Snakemake builds them (paper study: every dataset kind and method),
    loaded in ``workdir`` so that nothing touches the repo's .snakemake folder."""
    from snakemake.api import SnakemakeApi
    from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings, StorageSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(resource_settings=ResourceSettings(), storage_settings=StorageSettings(),
                                config_settings=ConfigSettings(configfiles=[REPO / "config/paper.yaml"]),
                                snakefile=REPO / "workflow/Snakefile", workdir=workdir)._workflow
        return list(workflow.rules)


def rule_commands(workdir: Path):
    """(rule, env file, entry modules) of every rule that runs Python; one entry per method for
    the integration rules, whose env and module depend on the method."""
    out = []
    for rule in workflow_rules(workdir):
        entries = [f"{m}.__main__" if _project_file(f"{m}.__main__") else m
                   for m in re.findall(r"python -m ([\w.]+)", rule.shellcmd or "")]
        if not entries:
            continue
        if callable(rule.conda_env):
            for name, spec in registry.METHODS.items():
                env = rule.conda_env(types.SimpleNamespace(method=name))
                out.append((f"{rule.name}[{name}]", Path(env), [*entries, spec.module]))
        else:
            out.append((rule.name, (Path(rule.snakefile).parent / rule.conda_env).resolve(), entries))
    return out


def test_every_module_a_rule_imports_is_in_its_env(tmp_path):
    commands = rule_commands(tmp_path)
    assert {"simulate", "preprocess", "integrate[harmony]", "integrate[sysvi]", "metrics_run", "aggregate",
            "report"} <= {name for name, _, _ in commands}
    dists = metadata.packages_distributions()
    missing = []
    for name, env_file, entries in commands:
        provided = env_provides(env_file)
        for module, importer in sorted(third_party_imports(tuple(entries)).items()):
            if not any(_norm(d) in provided for d in dists.get(module, [module])):
                missing.append(f"rule {name}: {importer} imports {module}, not installed by envs/{env_file.name}")
    assert not missing, "\n".join(missing)


def test_the_seurat_env_has_r_and_seurat():
    pkgs = [d for d in yaml.safe_load((REPO / "envs/seurat.yaml").read_text())["dependencies"] if isinstance(d, str)]
    assert any(p.startswith("r-base=") for p in pkgs) and any(p.startswith("r-seurat=") for p in pkgs)
    assert "Rscript" in (REPO / "methods/seurat.py").read_text()


def test_jobs_import_this_repos_packages_from_any_working_directory(tmp_path):
    """Every job puts the workflow's repo on PYTHONPATH: a conda env installs only third-party
    packages, and with --directory elsewhere `python -m` no longer finds the repo from the
    working directory. A `python` first on PATH records what the job's python sees."""
    bin_dir, work = tmp_path / "bin", tmp_path / "work"
    bin_dir.mkdir()
    work.mkdir()
    seen = tmp_path / "pythonpath.log"
    (bin_dir / "python").write_text(f'#!/bin/sh\nprintf "%s\\n" "$PYTHONPATH" >> {seen}\nexec {sys.executable} "$@"\n')
    (bin_dir / "python").chmod(0o755)
    cfg = {"out": "out", "datasets": {"sim": {"simulate": {"scenario": "baseline", "n_cells": 200, "n_genes": 600}}},
           "methods": {"harmony": None}}
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(cfg))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow/Snakefile"), "--cores", "1",
                          "--configfile", str(tmp_path / "study.yaml"), "--directory", str(work),
                          "out/data/raw/simulated/sim.h5ad"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, (res.stdout + res.stderr)[-3000:]
    assert seen.read_text().split(os.pathsep)[0].strip() == str(REPO)
