"""Write tests/data/convergence_histories.json.gz: the reconstruction-loss histories that calibrate
the convergence and learning rule (metrics/convergence.py).

Each model is trained on the default study's simulated dataset (Splatter scenario common-3, seed 1,
1,900 cells -> 1,069 after QC, 1,000 HVGs, CPU): for 1 and 2 epochs (runs that cannot have learned
the data) and for its full budget (DAVAE's released 20 epochs, the sysVI family's 500 as
config/config.yaml, scVI's scvi-tools rule: 400 epochs at this size), seed 0; DAVAE also with seed 1
and, as a full-budget run that cannot learn, with learning rate 1e-9. Only the reconstruction terms
of each history are kept (the terms the rule judges). ``--models`` reruns some models and keeps the
file's other runs.

    python scripts/convergence_fixture.py [--models davae ...] [--out tests/data/convergence_histories.json.gz]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# (model, params, seed): each run of the fixture; the epoch key is each model's budget parameter
RUNS = [
    *[("davae", {"epochs": e}, 0) for e in (1, 2, 20)],
    ("davae", {"epochs": 20}, 1),
    ("davae", {"epochs": 20, "lr": 1e-9}, 0),
    *[(m, {"max_epochs": e}, 0) for m in ("cvae", "sysvi") for e in (1, 2, 500)],
    *[("scvi", {"max_epochs": e}, 0) for e in (1, 2, 400)],
]


def dataset():
    from datasets.preprocess import preprocess
    from datasets.simulate import simulate

    raw = simulate(scenario="common-3", seed=1, n_cells=1900, n_genes=10000)
    return preprocess(raw, name="sim_common3", batch_key="batch", label_key="celltype", counts="X",
                      counts_integer=True, n_hvg=1000, min_genes=200, min_cells=3)


def main(argv: list[str] | None = None) -> int:
    from methods import registry
    from metrics.convergence import RECONSTRUCTION_TERMS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "tests" / "data" / "convergence_histories.json.gz"))
    parser.add_argument("--models", nargs="*", default=sorted({m for m, _, _ in RUNS}))
    args = parser.parse_args(argv)
    kept = []
    if Path(args.out).is_file():
        with gzip.open(args.out, "rt") as fh:
            kept = [r for r in json.load(fh)["runs"] if r["model"] not in args.models]
    adata = dataset()
    out = []
    for model, params, seed in RUNS:
        if model not in args.models:
            continue
        t0 = time.perf_counter()
        res = registry.load_module(model).integrate(adata.copy(), batch_key="batch", label_key="label",
                                                    params=registry.merge_params(model, params), seed=seed,
                                                    device="cpu")
        history = {t: [float(v) for v in res.loss_history[t]] for t in RECONSTRUCTION_TERMS if res.loss_history.get(t)}
        out.append({"model": model, "params": params, "seed": seed, "epochs": res.epochs, "history": history})
        print(f"{model} {params} seed {seed}: {time.perf_counter() - t0:.0f} s, "
              + ", ".join(f"{t} {h[0]:.4g} -> {min(h):.4g} (last {h[-1]:.4g})" for t, h in history.items()),
              file=sys.stderr, flush=True)
    out = kept + out
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(args.out, "wt") as fh:
        json.dump({"dataset": "simulate common-3, seed 1, n_cells 1900, n_genes 10000; 1000 HVGs",
                   "seed": 0, "runs": out}, fh)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
