#!/usr/bin/env bash
# The fast recipe's GPU figures, as two calls of the device tool on a lent GPU machine. Each call
# carries one part of the data (benchmarks/device_data.py pack, about 50 MB each). A carried path does not
# outlive the next call, so the first call copies its part to $WORK, which stays while the machine is warm
# (make the second call within its 30 idle seconds).
#
#   1. carry .gpu/a:  bash benchmarks/device_run.sh throughput   # the zoo's img/s; compile on three models
#   2. carry .gpu/b:  bash benchmarks/device_run.sh fast         # unpack the data; --recipe fast, eager and compiled
#
# Results land in $OUT (the folder the device tool brings back: a few JSON files, no run directories).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-bench-out/device}
WORK=${WORK:-/tmp/cifarlab-device}
mkdir -p "$OUT" "$WORK"
PY=${PYTHON:-python3}
stage=${1:?throughput or fast}

{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  $PY -c 'import sys, torch; print("python", sys.version.split()[0], "torch", torch.__version__, "cuda",
torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name())'
  echo "cpus $(nproc)"; } > "$OUT/env-$stage.txt" 2>&1
cat "$OUT/env-$stage.txt"

mkdir -p "$WORK/parts"
for part in .gpu/*/; do [ -d "$part" ] && cp -r "$part" "$WORK/parts/"; done  # this call's part, for the next

case $stage in
  throughput)  # batch 128/500 as in the CPU table; then a GPU-sized batch; then cold torch.compile
    timeout 170 $PY benchmarks/bench_throughput.py --device cuda --min-seconds 0.5 \
      --out "$OUT/throughput-b128.json" 2>&1 | tail -n 18
    timeout 60 $PY benchmarks/bench_throughput.py --device cuda --min-seconds 0.5 --precisions bf16 \
      --batch 1024 --infer-batch 2000 --out "$OUT/throughput-b1024.json" 2>&1 | tail -n 17
    timeout 130 $PY benchmarks/bench_throughput.py --device cuda --min-seconds 0.5 --precisions bf16 \
      --models baseline,resnet20,airbench --compile-models baseline,resnet20,airbench --out "$OUT/throughput-compile.json" 2>&1 | tail -n 6
    ;;
  fast)  # time to 94%: the recipe eager (3 seeds), then compiled (cold, then with the compile cache warm)
    $PY benchmarks/device_data.py unpack "$WORK"/parts/* --to "$WORK/cifar10" || exit 1
    for mode in off on; do
      seeds=$([ $mode = off ] && echo 0,1,2 || echo 0,1)
      timeout $([ $mode = off ] && echo 150 || echo 130) $PY benchmarks/bench_fast.py --data "$WORK/cifar10" \
        --no-loader-check --device cuda --compile $mode --seeds $seeds --out "$WORK/fast-compile-$mode" 2>&1 | tail -n 12
      for f in bench_fast.json runs_so_far.json; do  # the whole report, else the seeds that finished
        [ -f "$WORK/fast-compile-$mode/$f" ] && { cp "$WORK/fast-compile-$mode/$f" "$OUT/fast-compile-$mode.json"; break; }
      done
    done
    ;;
esac
