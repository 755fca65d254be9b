#!/usr/bin/env bash
# The wheels scripts/gpu_check.sh installs on a GPU machine without network: the transformers this
# package needs and the peers of the benchmarks (the official xlstm and mlstm_kernels), into .wheels/.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .wheels \
    "transformers==5.24.0" "xlstm==2.0.6" "mlstm_kernels==2.0.6"
# a regex new enough for transformers' import-time check, for the GPU image's Python 3.12
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .wheels \
    --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 "regex>=2025.10.22"
ls -l .wheels
