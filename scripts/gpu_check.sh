#!/usr/bin/env bash
# Everything a GPU machine checks, in one call (such a machine comes now and then and has no network):
# install the wheels of the peers brought along, build the kernels (CPU and CUDA), run the GPU tests and the
# CPU kernel tests, then the GPU benchmarks, whose table comes last. Full logs and the figures as JSON go
# to $OUT (or outputs/gpu_check). Fetch the wheels first, where a package index is reachable:
#     bash scripts/fetch_gpu_wheels.sh        # -> .wheels/ (git-ignored; copy it to the GPU machine)
#     bash scripts/gpu_check.sh [--quick]     # on the GPU machine
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-outputs/gpu_check}"
mkdir -p "$out"
python3 -m pip install --no-deps --no-index --quiet .wheels/*.whl || { echo "no wheels: run scripts/fetch_gpu_wheels.sh"; exit 1; }
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -m xlstm_hf build > "$out/build.log" 2>&1 || { tail -30 "$out/build.log"; exit 1; }
tail -1 "$out/build.log"
python3 -m pytest -q -p no:cacheprovider tests/test_cuda_kernels.py tests/test_compiled_ops.py \
    tests/test_cuda_sources.py > "$out/tests.log" 2>&1
tests=$?
grep -E "passed|failed|error" "$out/tests.log" | tail -15
python3 scripts/bench_kernels_gpu.py "$@" --out "$out/bench.json" > "$out/bench.log" 2>&1
tail -25 "$out/bench.log"
exit $tests
