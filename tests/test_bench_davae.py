"""benchmarks/bench_davae.py without TensorFlow: the patches to scbean, the gene filter, the table."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_davae", ROOT / "benchmarks" / "bench_davae.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert "tensorflow" not in sys.modules  # importing the script must not need it
    return module


# excerpts of scbean 0.5.6 as released, around the patched lines
RELEASED = {
    "model/__init__.py": ("from .vipcca import VAE, CVAE, CVAE2, CVAE3\nfrom .davae import fit_integration, DAVAE, "
                          "DACVAE\nfrom .visgp import VISGP\nfrom .vimcca import VIMCCA, fit_integration\n"),
    "model/davae.py": ("class DAVAE:\n    def __init__(self):\n        self.optimizer = optimizers.Adam(lr=0.01)\n\n"
                       "class DACVAE:\n    def __init__(self):\n        self.optimizer = optimizers.Adam(lr=0.01)\n\n"
                       "def fit_integration(adata, sparse=True):\n    if sparse:\n        orig_data = adata.X.A\n"
                       "    else:\n        orig_data = adata.X\n    return orig_data\n"),
}


def fake_scbean(root: Path) -> Path:
    for rel, text in RELEASED.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_patches_apply_once_and_are_idempotent(bench, tmp_path):
    pkg = fake_scbean(tmp_path / "scbean")
    lines = bench.patch_scbean(pkg)
    assert len(lines) == len(bench.PATCHES) and not any("already" in line for line in lines)
    init, davae = (pkg / "model/__init__.py").read_text(), (pkg / "model/davae.py").read_text()
    assert "except ImportError" in init and "from .vimcca import VIMCCA" in init
    assert davae.count("optimizers.legacy.Adam(lr=0.01)") == 2 and "optimizers.Adam(" not in davae
    assert "adata.X.toarray()" in davae and ".X.A\n" not in davae
    for text in (init, davae):
        compile(text, "patched", "exec")  # still Python
    # the guarded import: a package whose visgp cannot be imported still gives the rest
    ns: dict = {}
    exec(init.replace("from .vipcca", "#").replace("from .davae", "#").replace("from .vimcca", "#")
         .replace("from .visgp import VISGP", "import visgp_missing_for_this_test"), ns)
    assert ns["VISGP"] is None
    again = bench.patch_scbean(pkg)
    assert all("already applied" in line for line in again)
    assert (pkg / "model/davae.py").read_text() == davae


def test_unexpected_source_is_refused_without_writing(bench, tmp_path):
    pkg = fake_scbean(tmp_path / "scbean")
    (pkg / "model/davae.py").write_text("self.optimizer = optimizers.Adam(learning_rate=0.01)\n")
    with pytest.raises(bench.PatchError, match="optimizers.Adam"):
        bench.patch_scbean(pkg)
    with pytest.raises(bench.PatchError, match="missing"):
        bench.patch_scbean(tmp_path / "elsewhere")


def test_genes_in_every_batch(bench):
    import anndata as ad
    import pandas as pd
    import scipy.sparse as sp

    counts = np.array([[1, 0, 0, 2], [0, 0, 3, 1], [2, 0, 1, 0], [0, 4, 0, 0]], dtype=np.float32)
    obs = pd.DataFrame({"batch": pd.Categorical(["A", "A", "B", "B"])}, index=list("abcd"))
    adata = ad.AnnData(X=sp.csr_matrix(counts), obs=obs)
    adata.layers["counts"] = adata.X.copy()
    # gene 0 in A and B; gene 1 only in B; gene 2 in A and B; gene 3 only in A
    assert bench.genes_in_every_batch(adata).tolist() == [True, False, True, False]


def test_summary_table_means_and_spread(bench):
    rows = [{"dataset": "d", "implementation": "pca", "seed": None, "nmi": 0.8, "loss_first": None}]
    rows += [{"dataset": "d", "implementation": impl, "seed": s, "nmi": nmi, "loss_first": 1000.0 + s}
             for impl, vals in (("port", (0.1, 0.2, 0.3)), ("released", (0.5, 0.5, 0.5))) for s, nmi in enumerate(vals)]
    table = bench.summary_table(rows, ["nmi", "loss_first"]).splitlines()
    assert table[0] == "| dataset | implementation | seeds | nmi | loss_first |"
    # PCA first, then released, then port, whatever the row order
    assert table[2] == "| d | unintegrated PCA | - | 0.80 |  |"
    assert table[3] == "| d | scbean 0.5.6 (released) | 3 | 0.50 | 1001 +- 1 |"
    assert table[4] == "| d | port (methods/davae.py) | 3 | 0.20 +- 0.10 | 1001 +- 1 |"


def test_env_is_reused_only_with_the_same_pins(bench, tmp_path, monkeypatch):
    import json

    calls = []
    monkeypatch.setattr(bench.subprocess, "run", lambda cmd, **kw: calls.append(cmd) or
                        type("Done", (), {"returncode": 0})())
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    (env / bench.ENV_MARKER).write_text(json.dumps({"pins": bench.RELEASED_ENV, "scbean": bench.SCBEAN}))
    assert bench.ensure_env(env) == env / "bin" / "python" and calls == []
    (env / bench.ENV_MARKER).write_text(json.dumps({"pins": ["tensorflow==2.4.0"], "scbean": bench.SCBEAN}))
    bench.ensure_env(env)
    assert [c[-1] for c in calls] == [bench.RELEASED_ENV[-1], bench.SCBEAN]  # no new venv: python exists
    assert "--no-deps" in calls[1]
    assert json.loads((env / bench.ENV_MARKER).read_text())["pins"] == bench.RELEASED_ENV
    monkeypatch.setattr(bench.subprocess, "run", lambda cmd, **kw: type("Failed", (), {"returncode": 1})())
    (env / bench.ENV_MARKER).unlink()
    with pytest.raises(SystemExit, match="--env"):
        bench.ensure_env(env)
    assert not (env / bench.ENV_MARKER).exists()
