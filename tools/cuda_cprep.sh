#!/usr/bin/env bash
# TG_CPREP (TERNLM_CUDA_CPREP: the one-token GEMV's clusters prepare its input) in one device call: build, greedy text
# against the default, tools/cuda_h200.sh variants (tg128 alternating with the default; test_gpu_match on b158 and
# tinystories and memcheck for VCHECK), then test_gpu_match and memcheck on the synthetic 2B4T file (M2B=0: skip).
#   OUT=/tmp/out TERNLM_SHARED_DIR=.device-data/shared tools/cuda_cprep.sh
set -u
export OUT=${OUT:-/tmp/out}
B=build-cuda-h200; M=/tmp/2b4t.gguf
t0=$(date +%s)
tools/cuda_h200.sh build || exit 1
echo "build done $(( $(date +%s) - t0 )) s"
P="Once upon a time there was a little dog"
$B/ternlm run -m models/ternlm-tinystories.gguf -p "$P" -n 24 --gpu 2>/dev/null > $OUT/txt-default.txt
TERNLM_CUDA_CPREP=15 $B/ternlm run -m models/ternlm-tinystories.gguf -p "$P" -n 24 --gpu 2>$OUT/cprep-err.txt > $OUT/txt-cprep.txt
if cmp -s $OUT/txt-default.txt $OUT/txt-cprep.txt; then echo "greedy text: same"; else echo "greedy text DIFFERS"; head -c 600 $OUT/txt-cprep.txt; head -5 $OUT/cprep-err.txt; fi
TG_RUNS=3 ROUNDS=${ROUNDS:-2} VCHECK=${VCHECK:-c15} VARIANTS=${VARIANTS:-"c15:TERNLM_CUDA_CPREP=15 c7:TERNLM_CUDA_CPREP=7 c1:TERNLM_CUDA_CPREP=1 c8:TERNLM_CUDA_CPREP=8"} tools/cuda_h200.sh variants
echo "variants done $(( $(date +%s) - t0 )) s"
if [ "${M2B:-1}" = 1 ]; then
  TERNLM_CUDA_CPREP=15 timeout 240 $B/tests/test_gpu_match $M > $OUT/match-2b4t-c15.log 2>&1; echo "2b4t match c15 rc $? ($(tail -1 $OUT/match-2b4t-c15.log))"
  TERNLM_CUDA_CPREP=15 compute-sanitizer --tool memcheck --error-exitcode 3 --log-file $OUT/cs-2b4t-c15.log $B/ternlm run -m $M -p "$P" -n 4 --gpu >/dev/null 2>&1
  echo "2b4t memcheck c15 rc $? ($(grep 'ERROR SUMMARY' $OUT/cs-2b4t-c15.log | tail -1))"
fi
echo "all done $(( $(date +%s) - t0 )) s"
