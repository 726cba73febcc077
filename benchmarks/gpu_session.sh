#!/usr/bin/env bash
# Every GPU check in one call: the GPU tests, the kernel benchmark, the training-step
# benchmark (eager and torch.compile) and a torch.profiler trace of a ResNet19 step;
# every output under $OUT, flat.
#
# Needs python3 with torch, CuPy and pytest, and the wheels of SpikingJelly and loguru in
# build/whl (git-ignored), fetched beforehand, from the repo root:
#
#   mkdir -p build/whl && python3 -m pip download --no-deps --only-binary=:all: \
#     --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
#     -d build/whl spikingjelly==2.0.0 loguru
#
# Run from the repo root with build/whl beside it: bash benchmarks/gpu_session.sh.
# Each stage has its own time limit (575 s in all); a failing stage does not stop the next.
#
# Files under $OUT:
#   session.log                 everything printed, the profiler tables included
#   gpu_tests.xml               JUnit XML of tests/test_fused_lif_gpu.py + test_fused_lif_compile.py
#   bench_kernels_<device>.json benchmarks/bench_kernels.py (T 4 8 16, 1.05M and 4.19M)
#   bench_train_h200.json       benchmarks/bench_train.py, every case, eager
#   bench_train_h200-compile.json  the same for torch.compile (ResNet19, torch backend)
#   profile_*.json.gz           Chrome traces of one ResNet19 bf16 channels-last step
#                               (adaptive_lif, torch and cupy backends); open in Perfetto
set -u
OUT=${OUT:?run this through the device tool, which sets OUT}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site build/whl/*.whl || { echo "wheels missing: see the header" >&2; exit 2; }
export PYTHONPATH="$PWD:/tmp/site"
LOG="$OUT/session.log"

stage() {  # stage NAME SECONDS COMMAND...: run, log, report the exit status, go on
  local name=$1 limit=$2
  shift 2
  echo "=== $name (limit ${limit}s) $(date -u +%T)" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "=== $name: exit ${PIPESTATUS[0]}" | tee -a "$LOG"
}

{ nvidia-smi -L; python3 -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)"; } 2>&1 | tee -a "$LOG"

stage gpu-tests 150 python3 -m pytest -q -p no:cacheprovider -rfE \
  tests/test_fused_lif_gpu.py tests/test_fused_lif_compile.py --junitxml="$OUT/gpu_tests.xml"
stage bench-kernels 120 python3 benchmarks/bench_kernels.py --repeat 10 --out "$OUT"
stage bench-train 170 python3 benchmarks/bench_train.py --device cuda --batch 64 \
  --steps 10 --warmup 3 --out "$OUT" --tag h200
PROF=/tmp/profile
stage profile 45 python3 benchmarks/bench_train.py --device cuda --batch 64 --steps 2 \
  --warmup 2 --models resnet19 --neurons adaptive_lif --precisions bfloat16 \
  --layouts channels_last --out /tmp --tag profile --profile "$PROF"
cat "$PROF"/*.txt >>"$LOG" 2>/dev/null
for trace in "$PROF"/*.json; do [ -f "$trace" ] && gzip -c "$trace" >"$OUT/$(basename "$trace").gz"; done
stage bench-compile 90 python3 benchmarks/bench_train.py --device cuda --batch 64 \
  --steps 10 --warmup 3 --models resnet19 --neurons adaptive_lif lif --backends torch \
  --layouts channels_last --compile --out "$OUT" --tag h200-compile
ls -la "$OUT" | tee -a "$LOG"
