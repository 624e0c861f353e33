"""Conda environments: every env parses, every rule has one, and pins agree with pyproject."""

import re
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
