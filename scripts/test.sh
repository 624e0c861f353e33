#!/usr/bin/env bash
# README command two: install, then run the linters and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1} BENCH_PROGRESS=0
ruff check .
snakefmt --check workflow/
snakemake -s workflow/Snakefile --lint
python -m pytest -q -p no:cacheprovider "$@"
