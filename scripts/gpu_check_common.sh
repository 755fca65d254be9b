# Sourced by scripts/gpu_check.sh and scripts/gpu_check_bench.sh: the output folder $out ($OUT, else
# outputs/gpu_check), the sources on the path, the wheels of scripts/fetch_gpu_wheels.sh where present (they
# add transformers and the benchmarks' peers; torch with CUDA, pytest and ninja suffice without them), and
# what the machine is.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-outputs/gpu_check}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if compgen -G ".wheels/*.whl" > /dev/null; then
    python3 -m pip install --no-deps --no-index --quiet .wheels/*.whl > "$out/wheels.log" 2>&1 \
        || echo "the wheels did not install: see $out/wheels.log"
fi
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.is_available())"
    python3 -c "import transformers; print('transformers', transformers.__version__)" 2> /dev/null \
        || echo "no transformers: the model tests are skipped, the sLSTM block rows fail"
} | tee "$out/machine.txt"
