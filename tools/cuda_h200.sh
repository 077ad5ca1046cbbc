#!/usr/bin/env bash
# One device-machine call for the CUDA work (issue 15): builds this tree (and, where .device-data/old holds the
# previous native/cuda files, that version too), then runs tools/cuda_check.sh's checks, ternlm bench, an Nsight
# Compute profile of one decode step and a bandwidth copy, with every log under $OUT.
#   OUT=/tmp/out TERNLM_SHARED_DIR=.device-data/shared tools/cuda_h200.sh [steps...]
# steps: build old match memcheck conformance bench bonsai batch ncubatch ncu ncupp torch (default: all), heads (tg128 per
# head option, with k_headq's TERNLM_CUDA_HQ_D=4 and the head left out, then Nsight Compute of the head kernels), and
# variants (match, memcheck and tg128 of each input-preparation setting in VARIANTS, alternating with the default),
# skips (tg128 with kinds of decode launches left out or emptied: TERNLM_CUDA_TIMING_SKIP, the values in SKIPS), ncuvar (ncu of a step
# under NCU_VARIANT, with NCU_METRICS if set)
# Environment: ROUNDS (variants' rounds, 2), BENCH_R (bench's repetitions, 5), BENCH_PREP15 (0: bench skips its PREP=15 run), NCU_BUILDS (ncu's builds, "new old"), TERNLM_FIXTURES (conformance subset, default "b158,stories"), NCU_TIMEOUT (seconds per ncu run, 150),
# VCHECK (the variant names whose match and memcheck the variants step runs; default all), LOG_TAG (logs-TAG.tgz),
# HEADS (the head options of bench, batch, memcheck and heads: "file i8 i4"; file = the file's head, i8 / i4 =
# --head-quant), NCU_HEADS (heads' Nsight Compute runs, default HEADS), HEADS_TG (0: heads runs only Nsight Compute).
set -u
OUT=${OUT:-/tmp/cuda-out}
mkdir -p "$OUT"
STEPS=" ${*:-build old match memcheck conformance bench bonsai batch ncubatch ncu ncupp torch} "
has() { case "$STEPS" in *" $1 "*) return 0 ;; esac; return 1; }
export TERNLM_SHARED_DIR=${TERNLM_SHARED_DIR:-.device-data/shared}
M=/tmp/2b4t.gguf
build() { # SRC BUILD
  cmake -S "$1" -B "$2" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERNLM_CUDA=ON -DTERNLM_EMBED_MODEL=OFF \
    -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null && cmake --build "$2" -j 16 --target ternlm test_conformance test_gpu_match >/dev/null
}
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader | tee "$OUT/gpu.txt"
if has build; then
  build . build-cuda-h200 2>&1 | tail -20 &
  if has old && [ -d .device-data/old ]; then
    rm -rf /tmp/old && mkdir -p /tmp/old
    tar --exclude='./build*' --exclude=./.device-data -cf - . | tar -xf - -C /tmp/old
    cp .device-data/old/* /tmp/old/native/cuda/
    build /tmp/old /tmp/old/build 2>&1 | tail -20 &
  fi
  wait
  [ -x build-cuda-h200/ternlm ] || { echo "build failed"; exit 1; }
fi
B=build-cuda-h200
[ -f $M ] || $B/ternlm synth --shape 2b4t --out $M >/dev/null
fails=0
if has match; then
  echo "=== match"
  $B/tests/test_gpu_match "$TERNLM_SHARED_DIR"/fixtures/*.gguf models/ternlm-tinystories.gguf > "$OUT/match.log" 2>&1 || fails=$((fails + 1))
  tail -3 "$OUT/match.log"; grep -m5 -i "fail\|differ" "$OUT/match.log"
fi
if has conformance; then
  echo "=== conformance"
  TERNLM_GPU=1 TERNLM_FIXTURES=${TERNLM_FIXTURES:-b158,stories} $B/tests/test_conformance file > "$OUT/conformance.log" 2>&1 || fails=$((fails + 1))
  tail -2 "$OUT/conformance.log"
fi
if has memcheck; then
  echo "=== memcheck"
  for m in "$TERNLM_SHARED_DIR"/fixtures/*.gguf models/ternlm-tinystories.gguf; do
    compute-sanitizer --tool memcheck --error-exitcode 3 --log-file "$OUT/cs-$(basename $m).log" $B/ternlm run -m "$m" \
      -p "Once upon a time there was a little dog" -n 4 --gpu >/dev/null 2>&1
    rc=$?
    echo "$(basename "$m"): $(grep -E 'ERROR SUMMARY' "$OUT/cs-$(basename $m).log" | tail -1) (rc $rc)"
    [ $rc = 0 ] || fails=$((fails + 1))
  done
  # the quantized heads' kernels at every token count test_gpu_match uses (1, 3, 70 tokens, batches)
  for h in ${HEADS:-file i8 i4}; do
    [ $h = file ] && continue
    TERNLM_MATCH_HEADS=$h compute-sanitizer --tool memcheck --error-exitcode 3 --log-file "$OUT/cs-match-$h.log" \
      $B/tests/test_gpu_match models/ternlm-tinystories.gguf > "$OUT/cs-match-$h.out" 2>&1
    rc=$?
    echo "test_gpu_match tinystories head $h: $(grep -E 'ERROR SUMMARY' "$OUT/cs-match-$h.log" | tail -1) (rc $rc; $(tail -1 "$OUT/cs-match-$h.out"))"
    [ $rc = 0 ] || fails=$((fails + 1))
  done
fi
if has bench; then
  echo "=== bench"
  for v in new old; do
    bin=$B/ternlm; [ $v = old ] && bin=/tmp/old/build/ternlm
    [ -x $bin ] || continue
    for h in ${HEADS:-file i8 i4}; do
      hq=; [ $h = file ] || hq="--head-quant $h"
      echo "--- $v, head $h"
      $bin bench -m $M -p 512 -n 128 -r ${BENCH_R:-5} --gpu $hq 2>&1 | tee "$OUT/bench-$v-$h.log" | tail -4
    done
  done
  if [ "${BENCH_PREP15:-1}" = 1 ]; then
    echo "--- new, TERNLM_CUDA_PREP=15 (the producer's last block prepares every next input)"
    TERNLM_CUDA_PREP=15 $B/ternlm bench -m $M -p 512 -n 128 -r 3 --gpu 2>&1 | tail -1
  fi
fi
# "NAME:VAR=V,VAR=V" settings of the input preparation (backend_cuda.cu's SITE_* bits: 1 qkv, 2 o, 4 gate/up, 8 down)
VARIANTS=${VARIANTS:-"own7:TERNLM_CUDA_OWN=7 own1:TERNLM_CUDA_OWN=1 own4:TERNLM_CUDA_OWN=4 prep2:TERNLM_CUDA_PREP=2 prep8:TERNLM_CUDA_PREP=8 own7prep8:TERNLM_CUDA_OWN=7,TERNLM_CUDA_PREP=8 own5prep10:TERNLM_CUDA_OWN=5,TERNLM_CUDA_PREP=10"}
venv() { echo "${1#*:}" | tr ',' ' '; } # NAME:A=1,B=2 -> "A=1 B=2"
# a variant's OLD=1 runs the build of .device-data/old (step old) instead of this tree's
tg() { local bin=$B/ternlm; case " $1 " in *" OLD=1 "*) bin=/tmp/old/build/ternlm ;; esac; env $1 $bin bench -m $M -p 0 -n 128 -r ${TG_RUNS:-3} --gpu ${TG_ARGS:-} 2>&1 | grep -o 'median *[0-9.]*' | grep -o '[0-9.]*$'; }
if has variants; then
  echo "=== variants: tg128 tokens/s (bench -p 0 -n 128 -r ${TG_RUNS:-3}, median), rounds alternate with the default"
  for round in $(seq 1 ${ROUNDS:-2}); do
    line="round $round: default $(tg "")"
    for v in $VARIANTS; do line="$line | ${v%%:*} $(tg "$(venv "$v")")"; done
    echo "$line" | tee -a "$OUT/variants.txt"
  done
  echo "=== variants: test_gpu_match (b158, tinystories) and memcheck (tinystories)"
  for v in $VARIANTS; do
    case " ${VCHECK:-${v%%:*}} " in *" ${v%%:*} "*) ;; *) continue ;; esac
    e=$(venv "$v")
    env $e $B/tests/test_gpu_match "$TERNLM_SHARED_DIR"/fixtures/b158-llama3-i2s.gguf models/ternlm-tinystories.gguf > "$OUT/match-${v%%:*}.log" 2>&1
    rc=$?; [ $rc = 0 ] || fails=$((fails + 1))
    env $e compute-sanitizer --tool memcheck --error-exitcode 3 --log-file "$OUT/cs-${v%%:*}.log" $B/ternlm run -m models/ternlm-tinystories.gguf \
      -p "Once upon a time there was a little dog" -n 8 --gpu >/dev/null 2>&1
    rc2=$?; [ $rc2 = 0 ] || fails=$((fails + 1))
    echo "${v%%:*}: match rc $rc ($(tail -1 "$OUT/match-${v%%:*}.log")), memcheck rc $rc2 ($(grep -E 'ERROR SUMMARY' "$OUT/cs-${v%%:*}.log" | tail -1))"
  done
fi
if has skips; then
  echo "=== skips: tg128 with decode launches left out (results meaningless; timing only)"
  line="default $(tg "")"
  for k in ${SKIPS:-1 9 2 10 4 12 7 15}; do line="$line | skip$k $(tg TERNLM_CUDA_TIMING_SKIP=$k)"; done
  echo "$line" | tee "$OUT/skips.txt"
fi
if has ncuvar; then
  echo "=== ncu (one decode step) under ${NCU_VARIANT:-default}: ${NCU_VCOUNT:-272} launches"
  env $(venv "x:${NCU_VARIANT:-}") TERNLM_CUDA_GRAPH=0 timeout ${NCU_TIMEOUT:-150} ncu --csv --clock-control none --launch-skip ${NCU_VSKIP:-2000} \
    --launch-count ${NCU_VCOUNT:-272} --metrics ${NCU_METRICS:-gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum} \
    $B/ternlm run -m $M -p hi -n 24 --gpu > "$OUT/ncu-var.csv" 2>"$OUT/ncu-var.err"
  python3 tools/cuda_profile.py "$OUT/ncu-var.csv" | tee "$OUT/prof-var.txt"
fi
if has heads; then
  echo "=== heads: tg128 (bench -p 0 -n 128 -r ${TG_RUNS:-3}, median) per head option, k_headq's chunks in flight (HQ_D), head left out (skip 16)"
  for round in $(seq 1 ${ROUNDS:-2}); do
    [ "${HEADS_TG:-1}" = 1 ] || break
    line="round $round:"
    for h in ${HEADS:-file i8 i4}; do
      hq=; [ $h = file ] || hq="--head-quant $h"
      line="$line | $h $(TG_ARGS="$hq" tg "") skip16 $(TG_ARGS="$hq" tg TERNLM_CUDA_TIMING_SKIP=16)"
      [ $h = file ] || line="$line d4 $(TG_ARGS="$hq" tg TERNLM_CUDA_HQ_D=4)"
    done
    echo "$line" | tee -a "$OUT/heads.txt"
  done
  echo "=== ncu: the head's kernel in 4 decode steps (ternlm run) and in 2 steps of 64 sequences (cuda_batch_bench, 1-token prompts)"
  for h in ${NCU_HEADS:-${HEADS:-file i8 i4}}; do
    hq=; [ $h = file ] || hq="--head-quant $h"
    TERNLM_CUDA_GRAPH=0 timeout ${NCU_TIMEOUT:-150} ncu --csv --clock-control none -k regex:'k_headq|k_float_gemv' --launch-skip 2 --launch-count 4 \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \
      $B/ternlm run -m $M -p hi -n 8 --gpu $hq > "$OUT/ncu-head-$h.csv" 2>"$OUT/ncu-head-$h.err"
    echo "--- decode, head $h"; python3 tools/cuda_profile.py "$OUT/ncu-head-$h.csv" | tee "$OUT/prof-head-$h.txt"
    [ -x /tmp/cuda_batch_bench ] || gcc -std=c11 -O2 -Iruntime/include tools/cuda_batch_bench.c $B/libternlm.a -L/usr/local/cuda/lib64 \
      -lcudart_static -lstdc++ -lm -lpthread -ldl -lrt -o /tmp/cuda_batch_bench || continue
    timeout ${NCU_TIMEOUT:-150} ncu --csv --clock-control none -k regex:'k_headq|k_float_gemv' --launch-skip 5 --launch-count 2 \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum,launch__registers_per_thread,sm__warps_active.avg.pct_of_peak_sustained_active \
      /tmp/cuda_batch_bench $M 64 4 1 512 1 $h > "$OUT/ncu-hbatch-$h.csv" 2>"$OUT/ncu-hbatch-$h.err"
    echo "--- 64-sequence step, head $h"; python3 tools/cuda_profile.py "$OUT/ncu-hbatch-$h.csv" | tee "$OUT/prof-hbatch-$h.txt"
  done
fi
if has bonsai; then
  echo "=== bench --gpu, Bonsai 1.7B shapes (synthetic)"
  for t in q1_0 q2_0; do
    [ -f /tmp/bonsai-$t.gguf ] || $B/ternlm synth --shape bonsai-1.7b --type $t --out /tmp/bonsai-$t.gguf >/dev/null
    $B/ternlm bench -m /tmp/bonsai-$t.gguf -p 512 -n 128 -r 3 --gpu 2>&1 | tee "$OUT/bench-bonsai-$t.log" | tail -3
  done
fi
if has batch; then
  echo "=== multi-sequence batch on the GPU (tools/cuda_batch_bench.c), 2B4T shape"
  gcc -std=c11 -O2 -Iruntime/include tools/cuda_batch_bench.c $B/libternlm.a -L/usr/local/cuda/lib64 -lcudart_static \
    -lstdc++ -lm -lpthread -ldl -lrt -o /tmp/cuda_batch_bench || fails=$((fails + 1))
  for h in ${HEADS:-file i8 i4}; do
    for n in ${BATCH_SEQS:-1 16 64}; do /tmp/cuda_batch_bench $M $n 64 64 512 1 $h 2>&1 | tee -a "$OUT/batch.log"; done
  done
fi
if has ncubatch; then
  echo "=== ncu (one 64-sequence decode step of tools/cuda_batch_bench: 303 launches after 20 micro-batches)"
  timeout ${NCU_TIMEOUT:-150} ncu --csv --clock-control none --launch-skip 6060 --launch-count 303 \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
    /tmp/cuda_batch_bench $M 64 4 8 512 > "$OUT/ncu-batch.csv" 2>"$OUT/ncu-batch.err"
  python3 tools/cuda_profile.py "$OUT/ncu-batch.csv" | tee "$OUT/prof-batch.txt"
fi
if has ncu; then
  echo "=== ncu (one decode step)"
  for v in ${NCU_BUILDS:-new old}; do
    bin=$B/ternlm cnt=${NCU_COUNT:-152}; [ $v = old ] && bin=/tmp/old/build/ternlm cnt=${NCU_COUNT_OLD:-272}
    [ -x $bin ] || continue
    TERNLM_CUDA_GRAPH=0 timeout ${NCU_TIMEOUT:-150} ncu --csv --clock-control none --launch-skip 2000 --launch-count $cnt \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      $bin run -m $M -p hi -n 24 --gpu > "$OUT/ncu-$v.csv" 2>"$OUT/ncu-$v.err"
    echo "--- $v"; python3 tools/cuda_profile.py "$OUT/ncu-$v.csv" | tee "$OUT/prof-$v.txt"
  done
fi
if has ncupp; then
  for v in new old; do
    bin=$B/ternlm; [ $v = old ] && bin=/tmp/old/build/ternlm
    [ -x $bin ] || continue
    echo "=== ncu (one 512-token prompt, after bench's 16-token warm-up): $v"
    timeout ${NCU_TIMEOUT:-150} ncu --csv --clock-control none --launch-skip 302 --launch-count 302 \
      --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
      $bin bench -m $M -p 512 -n 0 -r 1 --gpu > "$OUT/ncu-pp-$v.csv" 2>"$OUT/ncu-pp-$v.err"
    python3 tools/cuda_profile.py "$OUT/ncu-pp-$v.csv" | tee "$OUT/prof-pp-$v.txt"
  done
fi
if has torch; then
  echo "=== torch bf16 + copy bandwidth"
  python3 tools/cuda_torch_compare.py 2>&1 | tee "$OUT/torch.json"
fi
(cd "$OUT" && mkdir -p keep && mv ./*.log ./*.csv ./*.err ./*.txt ./*.json keep/ 2>/dev/null; tar czf logs-${LOG_TAG:-all}.tgz keep && rm -rf keep)
echo "cuda_h200: $fails failed"
