"""Style gates: Snakemake's linter and snakefmt on the workflow, ruff on the Python code."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def tool(name: str) -> str:
    """A console script of this environment (next to the interpreter), else one on PATH."""
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    return found


def run(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def test_snakemake_lint_is_clean():
    res = run([sys.executable, "-m", "snakemake", "-s", "workflow/Snakefile", "--configfile",
               "tests/configs/tiny.yaml", "--lint"])
    out = res.stdout + res.stderr
    assert res.returncode == 0 and "good condition" in out, out[-4000:]


def test_snakefmt_has_nothing_to_change():
    res = run([tool("snakefmt"), "--check", "workflow/"])
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]


def test_ruff_is_clean():
    res = run([tool("ruff"), "check", "."])
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
