#!/usr/bin/env bash
# Download the wheels that benchmarks/gpu_check.sh installs offline on a GPU machine whose Python
# (3.12, manylinux x86_64) already has PyTorch, JAX, numpy, scipy, pandas, scikit-learn, h5py,
# numba/llvmlite, lightning, torchmetrics, xarray, rich, statsmodels, matplotlib and seaborn, but
# not the single-cell stack. Only what that machine lacks is fetched, at this repo's pins
# (constraints.txt), without dependencies (each one is named here), into benchmarks/wheels/
# (git-ignored). The wheels travel with the working tree: together they must stay < 64 MiB.
#
#   bash benchmarks/gpu_wheels.sh                       # CPython 3.12
#   PYTHON_VERSION=3.11 bash benchmarks/gpu_wheels.sh   # another interpreter on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
DEST=${GPU_WHEELS_DIR:-benchmarks/wheels}
PYTHON_VERSION=${PYTHON_VERSION:-3.12}
# what each timed part needs beyond the machine's own packages
RUNNER="anndata scverse-misc array-api-compat legacy-api-wrap natsort zarr numcodecs donfig google-crc32c"
SCANPY="scanpy session-info2 pynndescent umap-learn"
METRICS="scib-metrics plottable igraph texttable leidenalg"
SCVI="scvi-tools mudata six pyro-ppl pyro-api sparse ml_collections"
SDIST_ONLY="docrep"  # pure Python, published as an sdist only: built into a wheel here
pin() { grep -i "^$1==" constraints.txt || { echo "gpu_wheels: $1 is not pinned in constraints.txt" >&2; exit 1; }; }
pins=()
for name in $RUNNER $SCANPY $METRICS $SCVI; do pins+=("$(pin "$name")"); done
sdists=()
for name in $SDIST_ONLY; do sdists+=("$(pin "$name")"); done
quiet() { "$@" 2> >(grep -v "is ignored: it is neither" >&2); }  # local index mirrors absent here
platforms=()
for n in 39 35 34 31 28 27 24 17; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
mkdir -p "$DEST" && rm -f "$DEST"/*.whl  # one version of each: two would stop the install
quiet python -m pip download --quiet --no-deps --only-binary=:all: --implementation cp \
    --python-version "$PYTHON_VERSION" "${platforms[@]}" -d "$DEST" "${pins[@]}"
quiet python -m pip wheel --quiet --no-deps -w "$DEST" "${sdists[@]}"
wheels_kb=$(du -sk "$DEST" | cut -f1)
tree_kb=$(git ls-files -z | xargs -0 du -ck 2>/dev/null | tail -1 | cut -f1)
echo "gpu_wheels: $(ls "$DEST" | wc -l) wheels, $((wheels_kb / 1024)) MiB; working tree $((tree_kb / 1024)) MiB;" \
     "together $(((wheels_kb + tree_kb) / 1024)) MiB (limit 64 MiB)"
if (( wheels_kb + tree_kb >= 64 * 1024 )); then
    echo "gpu_wheels: wheels + working tree exceed 64 MiB" >&2
    exit 1
fi
