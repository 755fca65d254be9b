#!/usr/bin/env bash
# GPU check, part 2 of 2: the benchmarks of scripts/bench_kernels_gpu.py, --quick first (seconds; shows that
# every row runs), then the sizes of the goals, within 540 s. Rows of peers that are not installed say so.
# In $OUT (default outputs/gpu_check): bench_quick.{log,json}, bench.{log,json}; the Markdown table ends
# bench.log. Builds the kernels first where part 1 has not (the machine was handed back in between).
set -uo pipefail
source "$(dirname "$0")/gpu_check_common.sh"
timeout 240 python3 scripts/bench_kernels_gpu.py --quick --out "$out/bench_quick.json" > "$out/bench_quick.log" 2>&1
tail -22 "$out/bench_quick.log"
timeout $((540 - SECONDS)) python3 scripts/bench_kernels_gpu.py --out "$out/bench.json" > "$out/bench.log" 2>&1
status=$?
tail -22 "$out/bench.log"
exit "$status"
