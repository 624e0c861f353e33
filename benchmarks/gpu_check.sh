#!/usr/bin/env bash
# The prepared GPU check (benchmarks/gpu_check.py): installs the carried wheels offline where
# packages are missing, says which part cannot run for want of a package (one line each), then
# times what it can within its budget.
#
#   bash benchmarks/gpu_check.sh                           # on the GPU machine: 100k and 1M cells
#   bash benchmarks/gpu_check.sh --device cpu --cells 2000 # anywhere, tiny (what CI runs)
#
# Output: $OUT/gpu_check.json and $OUT/gpu_check.md ($OUT unset: results/gpu_check; or --out DIR).
# The wheels come from benchmarks/gpu_wheels.sh (run where pip reaches PyPI). They are installed
# with `pip install --target` into a folder put first on PYTHONPATH, not into a venv: the GPU
# machine's python3 is itself a venv, and a venv made from it (even --system-site-packages) sees
# the base interpreter's packages, not that venv's torch and JAX. Where every part already
# imports (this repo's .venv, CI), nothing is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WHEELS=${GPU_CHECK_WHEELS:-benchmarks/wheels}

# What each part imports beyond torch/numpy/scipy, which every part needs. Prints
# "part=reason;..." for the parts that cannot run (and one line each on stderr when asked).
probe() {
    "$PY" - "$1" <<'PY'
import importlib, sys
sys.path.insert(0, ".")
parts = {
    "scvi": ["anndata", "pandas", "lightning", "scvi"],  # scvi-tools' SCVI and SysVI timing
    "runner": ["anndata", "h5py", "pandas", "scanpy", "igraph", "leidenalg", "methods.runner"],  # integrate runs
    "metrics": ["anndata", "scanpy", "jax", "scib_metrics", "igraph", "leidenalg", "pynndescent", "sklearn",
                "metrics.score"],  # the metric set
}
for name in ("torch", "numpy", "scipy"):
    importlib.import_module(name)  # without these nothing runs: fail here, loudly
out = []
for part, modules in parts.items():
    for mod in modules:
        try:
            importlib.import_module(mod)
        except Exception as exc:  # noqa: BLE001 - any import failure skips the part
            reason = f"cannot import {mod} ({type(exc).__name__}: {exc})".replace(";", ",").replace("\n", " ")[:300]
            if sys.argv[1] == "say":
                print(f"gpu_check: {part} part skipped: {reason}", file=sys.stderr)
            out.append(f"{part}={reason}")
            break
print(";".join(out))
PY
}

skip=$(probe quiet)
if [[ -n "$skip" ]] && compgen -G "$WHEELS/*.whl" >/dev/null; then
    SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_site.XXXXXX")  # fresh: nothing of an earlier set stays
    pip_install() { "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$@"; }
    if ! pip_install "$WHEELS"/*.whl >/dev/null 2>&1; then
        for whl in "$WHEELS"/*.whl; do  # one by one: a wheel that does not install costs only its part
            if ! pip_install "$whl" >/dev/null 2>&1; then
                # no pip in this interpreter: a wheel is a zip laid out as site-packages
                "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$whl" "$SITE" \
                    || echo "gpu_check: could not install $(basename "$whl")"
            fi
        done
    fi
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    echo "gpu_check: installed $(compgen -G "$WHEELS/*.whl" | wc -l) wheels into $SITE"
    skip=$(probe say)
elif [[ -n "$skip" ]]; then
    echo "gpu_check: no wheels in $WHEELS (benchmarks/gpu_wheels.sh makes them)"
    skip=$(probe say)
fi
exec "$PY" benchmarks/gpu_check.py --skip "$skip" "$@"
