#!/usr/bin/env bash
# One device call for the persistent decode kernel (native/cuda/persist.cuh, TERNLM_CUDA_PERSIST): build, a smoke
# run under a timeout (a barrier that never opens must not eat the lease), test_gpu_match with the kernel on, tg128
# of the launch-per-linear path and of PK_VARIANTS in alternating rounds, compute-sanitizer memcheck with it on.
#   OUT=/tmp/out TERNLM_SHARED_DIR=.device-data/shared tools/cuda_pk.sh [steps: build smoke match tg memcheck bench]
# PK_VARIANTS: "NAME:VAR=V,VAR=V ..." (default: the kernel, its barriers alone, its barriers and copies alone);
# ROUNDS (2), HEADS for bench ("file i4"). The phase profile: TERNLM_CUDA_PERSIST=1 TERNLM_CUDA_PERSIST_PROF=1
# ternlm run -m /tmp/2b4t.gguf -p hi -n 64 --gpu (printed at the end); TERNLM_CUDA_PERSIST_LOG=1: the launch shape.
set -u
OUT=${OUT:-/tmp/cuda-out}
mkdir -p "$OUT"
STEPS=" ${*:-build smoke match tg memcheck} "
has() { case "$STEPS" in *" $1 "*) return 0 ;; esac; return 1; }
export TERNLM_SHARED_DIR=${TERNLM_SHARED_DIR:-.device-data/shared}
M=/tmp/2b4t.gguf
B=build-cuda-h200
P=TERNLM_CUDA_PERSIST=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$OUT/gpu.txt"
if has build; then
  cmake -S . -B $B -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERNLM_CUDA=ON -DTERNLM_EMBED_MODEL=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null && cmake --build $B -j 16 --target ternlm test_gpu_match 2>&1 | grep -E 'error|FAILED' | head
  [ -x $B/ternlm ] || { echo "build failed"; exit 1; }
fi
[ -f $M ] || $B/ternlm synth --shape 2b4t --out $M >/dev/null
MODELS="$TERNLM_SHARED_DIR/fixtures/b158-llama3-i2s.gguf models/ternlm-tinystories.gguf"
if has smoke; then
  echo "=== smoke"
  for m in $M $MODELS; do
    env $P TERNLM_CUDA_PERSIST_LOG=1 timeout 60 $B/ternlm run -m $m -p "Once upon a time" -n 16 --gpu 2>&1 | grep -E 'persist|tok/s|tokens/s|rror' | head -4
    echo "$(basename $m): rc ${PIPESTATUS[0]}"
  done
fi
if has match; then
  echo "=== match (persistent kernel on)"
  env $P timeout 300 $B/tests/test_gpu_match $MODELS "$TERNLM_SHARED_DIR"/fixtures/llama-stories260k.gguf > "$OUT/match-pk.log" 2>&1
  echo "rc $?"; tail -2 "$OUT/match-pk.log"; grep -m5 -i "fail\|differ" "$OUT/match-pk.log"
fi
tg() { env $1 timeout 90 $B/ternlm bench -m $M -p 0 -n 128 -r ${TG_RUNS:-3} --gpu ${TG_ARGS:-} 2>&1 | grep -o 'median *[0-9.]*' | grep -o '[0-9.]*$'; }
PK_VARIANTS=${PK_VARIANTS:-"pk:$P pkbar:$P,TERNLM_CUDA_PERSIST_MODE=1 pkcopy:$P,TERNLM_CUDA_PERSIST_MODE=2"}
if has tg; then
  echo "=== tg128 tokens/s (bench -p 0 -n 128 -r ${TG_RUNS:-3}, median ${TG_ARGS:-}); base = launches per linear"
  for round in $(seq 1 ${ROUNDS:-2}); do
    line="round $round: base $(tg "")"
    for v in $PK_VARIANTS; do line="$line | ${v%%:*} $(tg "$(echo "${v#*:}" | tr ',' ' ')")"; done
    echo "$line" | tee -a "$OUT/tg.txt"
  done
fi
if has memcheck; then
  echo "=== memcheck (persistent kernel on)"
  for m in $MODELS; do
    env $P timeout 200 compute-sanitizer --tool memcheck --error-exitcode 3 --log-file "$OUT/cs-pk-$(basename $m).log" $B/ternlm run -m "$m" \
      -p "Once upon a time there was a little dog" -n 8 --gpu >/dev/null 2>&1
    rc=$?
    echo "$(basename "$m"): $(grep -E 'ERROR SUMMARY' "$OUT/cs-pk-$(basename $m).log" | tail -1) (rc $rc)"
  done
fi
if has bench; then
  echo "=== bench (pp512 and tg128, -r ${BENCH_R:-3})"
  for h in ${HEADS:-file i4}; do
    hq=; [ $h = file ] || hq="--head-quant $h"
    for v in base pk; do
      e=; [ $v = pk ] && e=$P
      echo "--- $v, head $h: $(env $e timeout 120 $B/ternlm bench -m $M -p 512 -n 128 -r ${BENCH_R:-3} --gpu $hq 2>&1 | tail -2 | tr '\n' ' ')"
    done
  done
fi
