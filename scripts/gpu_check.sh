#!/usr/bin/env bash
# GPU check, part 1 of 2: build the kernels (CPU and CUDA) and run tests/test_cuda_kernels.py, every CUDA kernel
# against the float64 reference, within 420 s (each test at most 100 s; a hanging one dumps every thread's
# stack). Logs in $OUT (default outputs/gpu_check): machine.txt, build.log, tests.log (a line per test, in
# order), tests.xml. Part 2, the benchmarks: scripts/gpu_check_bench.sh. Notes: scripts/gpu_notes.md.
set -uo pipefail
source "$(dirname "$0")/gpu_check_common.sh"
# the build on its own budget (the first test would spend its timeout on it): one test, which builds
timeout 300 python3 -m pytest -q -p no:cacheprovider -k the_cuda_kernels_run_where_asked_for \
    tests/test_cuda_kernels.py > "$out/build.log" 2>&1
tail -3 "$out/build.log"
per_test=(-o faulthandler_timeout=100)
python3 -c "import pytest_timeout" 2> /dev/null && per_test+=(--timeout=100)
timeout $((420 - SECONDS)) python3 -m pytest -v -p no:cacheprovider -rfEs --durations=10 "${per_test[@]}" \
    --junitxml="$out/tests.xml" tests/test_cuda_kernels.py > "$out/tests.log" 2>&1
status=$?
grep -E "^(FAILED|ERROR)|passed|failed" "$out/tests.log" | tail -30
if [ "$status" -eq 124 ]; then echo "stopped at 420 s; the last test started is the last line of $out/tests.log"; fi
exit "$status"
