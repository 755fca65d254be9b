#!/usr/bin/env bash
# The wheels scripts/gpu_check.sh installs on a GPU machine without network: the transformers this
# package needs and the peers of the benchmarks (the official xlstm and mlstm_kernels), into .wheels/.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .wheels \
    "transformers==5.24.0" "xlstm==2.0.6" "mlstm_kernels==2.0.6"
ls -l .wheels
