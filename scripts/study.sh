#!/usr/bin/env bash
# README command one: install, then run the default study (simulated data, no internet)
# end to end. Extra arguments go to snakemake (e.g. --configfile config/paper.yaml).
set -euo pipefail
cd "$(dirname "$0")/.."
# Snakemake answers a mistyped --configfile with a traceback: say it in one line first
args=("$@")
for i in "${!args[@]}"; do
  case "${args[$i]}" in
    --configfile|--configfiles) file="${args[$((i + 1))]:-}" ;;
    --configfile=*) file="${args[$i]#--configfile=}" ;;
    *) continue ;;
  esac
  if [ ! -f "$file" ]; then
    echo "error: --configfile '$file' is not a file (paths are relative to $(pwd)): check the name" >&2
    exit 2
  fi
done
bash scripts/install.sh
. .venv/bin/activate
snakemake -s workflow/Snakefile --cores "${CORES:-$(nproc)}" "$@"
echo "report: $(python -c 'import yaml,sys; print(yaml.safe_load(open("config/config.yaml"))["out"])')/report.html"
