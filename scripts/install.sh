#!/usr/bin/env bash
# Install everything the study and the tests need, idempotently:
#   - a virtual environment in .venv with torch 2.13.0 first (a CPU wheel where one is
#     provided; an unpinned torch would pull GBs of CUDA packages), then the pinned project;
#   - Debian packages when running as root with apt: R + Seurat (Seurat baselines),
#     chromium (report check), slurm-wlm + munge (cluster test). Missing system packages only
#     skip the tests that need them; the study records Seurat runs as failed without R.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ "${SKIP_APT:-0}" != 1 ]; then
    need=()
    command -v Rscript >/dev/null && Rscript -e 'library(Seurat)' >/dev/null 2>&1 || need+=(r-cran-seurat)
    command -v chromium >/dev/null || need+=(chromium)
    command -v slurmctld >/dev/null || need+=(slurm-wlm munge)
    if [ ${#need[@]} -gt 0 ]; then
        echo "install.sh: apt-get install ${need[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null \
            || echo "install.sh: warning: could not install ${need[*]} (their tests will be skipped)"
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('2.13.0') else 1)" 2>/dev/null \
    || python -m pip install -q torch==2.13.0
python -m pip install -q -c constraints.txt -e ".[test]"
python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
echo "install.sh: environment ready in .venv"
