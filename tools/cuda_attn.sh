#!/usr/bin/env bash
# Prompt attention (issue 15, eleventh session): after tools/cuda_h200.sh build, compare k_attention_tile (default)
# with k_attention_group (TERNLM_CUDA_ATTN_TILE=0) on the 2B4T shape, logs under $OUT.
#   OUT=/tmp/out tools/cuda_attn.sh [steps...]
# steps: match2b (test_gpu_match on the 2B4T file, its own head: heads of 128 dimensions), memcheck2b (compute-sanitizer
# over a 512-token prompt), bench0 (bench with TERNLM_CUDA_ATTN_TILE=0), ncu0 (Nsight Compute of one 512-token prompt
# with it), nt (pp512, attention time and test_gpu_match for each NT:PT in NTS: TERNLM_CUDA_ATTN_NT, _PT), ncuattn (the attention kernel's sections on one launch), sass (the tile kernel's instruction mix)
set -u
OUT=${OUT:-/tmp/cuda-out}
export TERNLM_SHARED_DIR=${TERNLM_SHARED_DIR:-.device-data/shared}
mkdir -p "$OUT"
STEPS=" ${*:-match2b memcheck2b bench0 ncu0} "
has() { case "$STEPS" in *" $1 "*) return 0 ;; esac; return 1; }
B=build-cuda-h200
M=/tmp/2b4t.gguf
[ -f $M ] || $B/ternlm synth --shape 2b4t --out $M >/dev/null
fails=0
if has match2b; then
  echo "=== test_gpu_match, 2B4T shape (file head)"
  TERNLM_MATCH_HEADS=file timeout 300 $B/tests/test_gpu_match $M > "$OUT/match2b.log" 2>&1 || fails=$((fails + 1))
  tail -3 "$OUT/match2b.log"
fi
if has memcheck2b; then
  echo "=== memcheck, 2B4T 512-token prompt"
  timeout 300 compute-sanitizer --tool memcheck --error-exitcode 3 --log-file "$OUT/cs-2b4t.log" $B/ternlm bench -m $M -p 512 -n 2 -r 1 --gpu >/dev/null 2>&1
  rc=$?; echo "2b4t pp512: $(grep -E 'ERROR SUMMARY' "$OUT/cs-2b4t.log" | tail -1) (rc $rc)"; [ $rc = 0 ] || fails=$((fails + 1))
fi
if has bench0; then
  echo "=== bench, TERNLM_CUDA_ATTN_TILE=0 (k_attention_group)"
  TERNLM_CUDA_ATTN_TILE=0 $B/ternlm bench -m $M -p 512 -n 128 -r ${BENCH_R:-3} --gpu 2>&1 | tee "$OUT/bench-tile0.log" | tail -3
  echo "=== bench, default"
  $B/ternlm bench -m $M -p 512 -n 128 -r ${BENCH_R:-3} --gpu 2>&1 | tee "$OUT/bench-tile1.log" | tail -3
fi
if has nt; then
  echo "=== tokens per block (TERNLM_CUDA_ATTN_NT): pp512, the attention kernel's time (ncu, 30 launches), test_gpu_match (file head)"
  for v in ${NTS:-4:64 4:32 2:32}; do
    nt=${v%%:*} pt=${v#*:}
    echo "--- NT=$nt PT=$pt: $(TERNLM_CUDA_ATTN_NT=$nt TERNLM_CUDA_ATTN_PT=$pt $B/ternlm bench -m $M -p 512 -n 0 -r ${BENCH_R:-3} --gpu 2>&1 | grep -o 'median *[0-9.]*')"
    TERNLM_CUDA_ATTN_NT=$nt TERNLM_CUDA_ATTN_PT=$pt timeout ${NCU_TIMEOUT:-150} ncu --csv --clock-control none -k regex:k_attention_tile --launch-skip 30 \
      --launch-count 30 --metrics gpu__time_duration.sum,sm__cycles_active.avg,sm__cycles_elapsed.avg $B/ternlm bench -m $M -p 512 -n 0 -r 1 --gpu \
      > "$OUT/ncu-nt$nt-$pt.csv" 2>/dev/null
    python3 tools/cuda_profile.py "$OUT/ncu-nt$nt-$pt.csv" | grep k_attention
    TERNLM_CUDA_ATTN_NT=$nt TERNLM_CUDA_ATTN_PT=$pt TERNLM_MATCH_HEADS=file $B/tests/test_gpu_match "$TERNLM_SHARED_DIR"/fixtures/*.gguf models/ternlm-tinystories.gguf > "$OUT/match-nt$nt-$pt.log" 2>&1 || fails=$((fails + 1))
    tail -1 "$OUT/match-nt$nt-$pt.log"
  done
fi
if has ncu0; then
  echo "=== ncu (one 512-token prompt), TERNLM_CUDA_ATTN_TILE=0"
  TERNLM_CUDA_ATTN_TILE=0 timeout ${NCU_TIMEOUT:-150} ncu --csv --clock-control none --launch-skip 302 --launch-count 302 \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum,dram__bytes_write.sum \
    $B/ternlm bench -m $M -p 512 -n 0 -r 1 --gpu > "$OUT/ncu-pp-tile0.csv" 2>"$OUT/ncu-pp-tile0.err"
  python3 tools/cuda_profile.py "$OUT/ncu-pp-tile0.csv" | tee "$OUT/prof-pp-tile0.txt"
fi
if has ncuattn; then
  echo "=== ncu sections, one k_attention_tile launch (the last layer of a 512-token prompt)"
  timeout ${NCU_TIMEOUT:-150} ncu --clock-control none -k regex:k_attention_tile --launch-skip ${NCU_ASKIP:-31} --launch-count 1 \
    --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis --section Occupancy \
    --section WarpStateStats --section SchedulerStats --section LaunchStats --section InstructionStats \
    $B/ternlm bench -m $M -p 512 -n 0 -r 1 --gpu > "$OUT/ncu-attn.txt" 2>&1
  grep -E "Duration|Throughput|Pipe|Issue|Eligible|Active Warps|Registers|Shared Memory|Bank|Stall|Occupancy|Block Limit|Warp Cycles|Executed Ipc" "$OUT/ncu-attn.txt" | head -60
fi
if has sass; then
  cuobjdump -sass -fun '_Z16k_attention_tileILi4ELi4ELi64EEv9attn_argsii' $B/libternlm.a > "$OUT/sass-tile.txt" 2>&1
  echo "=== SASS of k_attention_tile<4, 4, 64>: $(grep -cE '^ +/\*[0-9a-f]+\*/' "$OUT/sass-tile.txt") instructions"
  grep -oE '^ +/\*[0-9a-f]+\*/ +[A-Z0-9]+(\.[A-Z0-9.]+)?' "$OUT/sass-tile.txt" | awk '{print $2}' | sort | uniq -c | sort -rn | head -25
fi
echo "cuda_attn: $fails failed"
