"""Your own method named in the config (methods/external.py): its SPEC is read without importing
it, the config's keys win, mistakes are one line naming the key, and the runner runs it from its
file like a built-in method (through ``python -m methods run --external``)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from methods import registry
from methods.external import ExternalMethodError, external_spec

REPO = Path(__file__).resolve().parents[1]
ENVS = REPO / "envs"

GOOD = '''
import numpy as np
from helper import scale  # a file beside this one
from methods.base import IntegrationResult

SPEC = {"output": "embedding", "defaults": {"n_comps": 5, "factor": 1.0}, "description": "test method"}


def integrate(adata, *, batch_key, label_key, params, seed, device):
    emb = np.asarray(adata.obsm["X_pca"][:, : params["n_comps"]]) * scale(params["factor"])
    return IntegrationResult(embedding=emb, extra={"seed": seed})
'''


@pytest.fixture
def module(tmp_path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "my_method.py").write_text(GOOD)
    (folder / "helper.py").write_text("def scale(f):\n    return 2.0 * f\n")
    return folder / "my_method.py"


def test_spec_from_the_module_and_config_keys_win(module, tmp_path):
    spec = external_spec("my_method", {"module": "mine/my_method.py", "gpu": True}, tmp_path, ENVS)
    assert spec.module == str(module) and spec.output == "embedding" and spec.input == "lognorm"
    assert spec.gpu is True and spec.supervised is False and spec.env == "data" and spec.external
    assert spec.defaults == {"n_comps": 5, "factor": 1.0}


def test_a_module_name_on_the_path_works_too(module, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(module.parent))
    spec = external_spec("my_method", {"module": "my_method"}, tmp_path, ENVS)
    assert spec.module == "my_method" and spec.defaults["n_comps"] == 5


@pytest.mark.parametrize(("section", "source", "needle"), [
    ({"module": "nothere.py"}, None, "methods.m.module: {tmp}/nothere.py does not exist (a relative path is "
                                     "relative to {tmp})"),
    ({"module": "no_such_module_xyz"}, None, "methods.m.module: cannot find the Python module 'no_such_module_xyz'"),
    ({"module": "m.py"}, "SPEC = {'output': 'embedding'}\n", "methods.m.module: {tmp}/m.py defines no integrate("),
    ({"module": "m.py"}, "X = 1\nSPEC = {'output': X}\ndef integrate(): pass\n", "SPEC must be a literal dict"),
    ({"module": "m.py"}, "def integrate(): pass\n", "output must be one of embedding, graph, corrected"),
    ({"module": "m.py"}, "SPEC = {'output': 'embedding', 'gpus': True}\ndef integrate(): pass\n",
     "SPEC has unknown key(s) gpus"),
    ({"module": "m.py", "output": "graph", "env": "tensorflow"}, "def integrate(): pass\n",
     "methods.m.module: env 'tensorflow' is not in"),
    ({"module": "m.py", "output": "graph"}, "def integrate(:\n", "cannot read {tmp}/m.py as Python"),
], ids=["missing_file", "missing_module", "no_integrate", "spec_not_literal", "no_output", "spec_typo",
        "unknown_env", "syntax_error"])
def test_mistakes_are_one_line_naming_the_key(tmp_path, section, source, needle):
    if source is not None:
        (tmp_path / "m.py").write_text(source)
    with pytest.raises(ExternalMethodError) as err:
        external_spec("m", section, tmp_path, ENVS)
    assert needle.format(tmp=tmp_path) in str(err.value), str(err.value)


def test_a_built_in_name_is_not_replaced(module, tmp_path):
    spec = external_spec("harmony", {"module": str(module)}, tmp_path, ENVS)
    with pytest.raises(KeyError, match="'harmony' is a built-in method; give your own method another name"):
        registry.register("harmony", spec)


def test_runner_runs_it_from_its_file_with_defaults_and_params(module, sim_small_path, tmp_path):
    spec = external_spec("my_method", {"module": str(module)}, tmp_path, ENVS)
    out = tmp_path / "run" / "run.h5ad"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "methods", "run", "--data", str(sim_small_path), "--out", str(out),
                          "--method", "my_method", "--params", '{"n_comps": 3}', "--seed", "4", "--external",
                          json.dumps(dataclasses.asdict(spec))], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    import anndata as ad

    run = ad.read_h5ad(out)
    record = json.loads(run.uns["run_json"])
    assert record["status"] == "ok", record.get("error")
    assert record["params"] == {"n_comps": 3, "factor": 1.0} and record["extra"] == {"seed": 4}
    data = ad.read_h5ad(sim_small_path)
    np.testing.assert_allclose(run.obsm["X_emb"], 2.0 * data.obsm["X_pca"][:, :3], rtol=1e-6)
    bad = subprocess.run([sys.executable, "-m", "methods", "run", "--data", str(sim_small_path), "--out",
                          str(tmp_path / "bad" / "run.h5ad"), "--method", "my_method", "--params", '{"n_comp": 3}',
                          "--external", json.dumps(dataclasses.asdict(spec))], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 0  # recorded as a failed run, as for a built-in method
    failed = json.loads(ad.read_h5ad(tmp_path / "bad" / "run.h5ad").uns["run_json"])
    assert failed["status"] == "failed" and "has no parameter(s) n_comp; known: factor, n_comps" in failed["error"]
