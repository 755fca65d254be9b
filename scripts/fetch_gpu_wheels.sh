#!/usr/bin/env bash
# Optional wheels for a GPU machine without network, into .wheels/ (git-ignored; carry it along): the
# scripts/gpu_check*.sh install them where present. Torch with CUDA, pytest and ninja suffice without them;
# they add the transformers this package needs (the model tests, the sLSTM block rows of the benchmarks), the
# benchmarks' peers (the official xlstm and mlstm_kernels) and ninja, for an image that lacks it.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .wheels \
    "transformers==5.24.0" "xlstm==2.0.6" "mlstm_kernels==2.0.6"
# a regex new enough for transformers' import-time check, and ninja, for the GPU image's Python 3.12
python3 -m pip download --quiet --no-deps --only-binary=:all: --dest .wheels \
    --python-version 3.12 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 "regex>=2025.10.22" ninja
ls -l .wheels
