#!/usr/bin/env bash
# The prepared GPU check: everything this project measures on a GPU, in one command of at most
# 8 minutes on one GPU, its figures written to results/gpu/.
#
#   1. the gpu-marked tests (pytest -m gpu);
#   2. scripts/bench_train.py: eager and compiled plain loops; ppl_vae uncompiled, fx (a CUDA
#      graph on CUDA), fx without the CUDA graph, inductor, auto (the default);
#   3. scripts/bench_evaluate.py on the 784-400-20 model: the interleaved subset against the
#      bare compute limit and pythae's loop, then the full 10,000 x 5000 evaluation;
#   4. a short training run killed with SIGKILL after its first checkpoint and resumed, beside
#      the same run uninterrupted.
#
# With --device cpu it runs the same stages at small sizes (the slow test suite runs it so, to
# prove it is not broken).
#
# Usage: bash scripts/gpu_check.sh [--device cuda|cpu] [--out DIR] [--data-dir DIR]
set -euo pipefail

device=cuda
out=results/gpu
data_dir=../shared/data
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=${2:-}; shift 2 ;;
    --out) out=${2:-}; shift 2 ;;
    --data-dir) data_dir=${2:-}; shift 2 ;;
    *) echo "gpu_check.sh: unknown option $1; the options are --device cuda|cpu, --out DIR, --data-dir DIR" >&2; exit 2 ;;
  esac
done
case "$device" in
  cuda) rounds=7; steps=100; batch_sizes="128 512"; datapoints=10000; samples=5000; reference=500; block=50
        dataset=binarized-mnist; epochs=3; every=100 ;;
  cpu) rounds=1; steps=5; batch_sizes="32"; datapoints=20; samples=50; reference=10; block=5
       dataset=binarized-mnist-sample; epochs=3; every=5 ;;
  *) echo "gpu_check.sh: --device must be cuda or cpu, got '$device'" >&2; exit 2 ;;
esac
if [ "$device" = cuda ] && ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
  echo "gpu_check.sh: --device cuda, but torch sees no CUDA device; run with --device cpu" >&2; exit 2
fi
mkdir -p "$out"
start=$(date +%s)
stage() { echo "[gpu_check $(( $(date +%s) - start ))s] $*" | tee -a "$out/log.txt"; }

stage "machine"
{
  date -u
  python -c "import torch, pyro; print('torch', torch.__version__, 'pyro', pyro.__version__, 'cuda', torch.cuda.is_available())"
  if command -v nvidia-smi > /dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
} > "$out/machine.txt" 2>&1

stage "gpu-marked tests"
python -m pytest -q -m gpu -p no:cacheprovider --junitxml "$out/gpu_tests.xml" tests > "$out/gpu_tests.log" 2>&1 \
  || { tail -20 "$out/gpu_tests.log"; stage "gpu-marked tests FAILED"; }
tail -1 "$out/gpu_tests.log" | tee -a "$out/log.txt"

stage "bench_train ($rounds rounds of $steps steps)"
# shellcheck disable=SC2086  # batch_sizes is a list
python scripts/bench_train.py --device "$device" --data-dir "$data_dir" --rounds "$rounds" --steps "$steps" \
  --batch-sizes $batch_sizes --out "$out" --name bench_train > "$out/bench_train.log" 2>&1

stage "bench_evaluate ($datapoints x $samples; references on $reference images)"
python scripts/bench_evaluate.py --device "$device" --data-dir "$data_dir" --models "784-400-20 relu" \
  --num-datapoints "$datapoints" --num-samples "$samples" --reference-datapoints "$reference" --block-size "$block" \
  --out "$out" > "$out/bench_evaluate.log" 2>&1

stage "kill and resume ($dataset, $epochs epochs)"
runs="$out/kill_resume"
rm -rf "$runs"
mkdir -p "$runs"
flags=(--dataset "$dataset" --data-dir "$data_dir" --device "$device" --epochs "$epochs" --batch-size 100
       --checkpoint-every-steps "$every" --no-progress --seed 1)
ppl-vae train "${flags[@]}" --out "$runs/uninterrupted" > "$runs/uninterrupted.log" 2>&1
ppl-vae train "${flags[@]}" --out "$runs/killed" > "$runs/killed.log" 2>&1 &
pid=$!
for _ in $(seq 600); do
  if compgen -G "$runs/killed/checkpoints/train-*.pt" > /dev/null; then break; fi
  sleep 0.1
done
kill -9 "$pid" 2> /dev/null || true
wait "$pid" 2> /dev/null || true
if [ -e "$runs/killed/checkpoint.pt" ]; then
  echo "the run finished before the kill" > "$runs/killed_at.txt"
else
  basename "$(ls "$runs"/killed/checkpoints/train-*.pt | tail -1)" > "$runs/killed_at.txt"
fi
ppl-vae train --resume "$runs/killed" --no-progress > "$runs/resumed.log" 2>&1
python - "$runs" <<'PY' | tee "$runs/summary.txt"
import sys
from pathlib import Path

import pandas as pd

runs = Path(sys.argv[1])
a, b = (pd.read_csv(runs / name / "metrics.csv") for name in ("uninterrupted", "killed"))
print("killed after checkpoint", (runs / "killed_at.txt").read_text().strip())
columns = ["epoch", "train_elbo", "test_elbo"]
print(pd.concat({"uninterrupted": a[columns], "killed and resumed": b[columns]}, axis=1).to_string(index=False))
gap = (a[columns] - b[columns]).abs().max().max()
print(f"largest difference: {gap:.3g} nats ({'bitwise equal' if gap == 0 else 'not bitwise equal'})")
PY
find "$runs" -name "*.pt" -delete  # the figures stay, the weights go

stage "done"
