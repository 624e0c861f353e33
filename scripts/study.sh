#!/usr/bin/env bash
# README command one: install, then run the default study (simulated data, no internet)
# end to end. Extra arguments go to snakemake (e.g. --configfile config/paper.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
. .venv/bin/activate
snakemake -s workflow/Snakefile --cores "${CORES:-$(nproc)}" "$@"
echo "report: $(python -c 'import yaml,sys; print(yaml.safe_load(open("config/config.yaml"))["out"])')/report.html"
