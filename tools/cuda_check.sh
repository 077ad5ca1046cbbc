#!/usr/bin/env bash
# Builds (if needed), checks and times the CUDA backend in one go, on a machine with an NVIDIA GPU.
#   TERNLM_SHARED_DIR=../shared tools/cuda_check.sh [BUILD_DIR]
# Environment: TERNLM_FIXTURES (a subset of the conformance fixtures, e.g. "b158,stories"), CHECK_SKIP (words among
# "match conformance memcheck bench torch" to leave out).
# 1. GPU logits bit-identical to the CPU's (tests/test_gpu_match: prompts, chunks, 100 greedy steps, a 4-sequence
#    batch) on every model present; 2. conformance through --gpu against the reference logits; 3. compute-sanitizer memcheck; 4. `ternlm
#    bench --gpu` on the synthetic 2B4T model, with and without programmatic dependent launch; 5. the same shapes as
#    bf16 matmuls in PyTorch (tools/cuda_torch_compare.py).
set -u
B=${1:-build-cuda}
S=${TERNLM_SHARED_DIR:-../shared}
export TERNLM_SHARED_DIR=$S
SKIP=${CHECK_SKIP:-}
fails=0
step() { printf '\n=== %s\n' "$*"; }
want() { case " $SKIP " in *" $1 "*) return 1 ;; esac; }
if [ ! -x "$B/ternlm" ] || [ ! -x "$B/tests/test_gpu_match" ]; then
  cmake -S . -B "$B" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERNLM_CUDA=ON -DTERNLM_EMBED_MODEL=OFF \
    -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" >/dev/null &&
    cmake --build "$B" -j --target ternlm test_conformance test_gpu_match || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
models=()
for m in "$S"/fixtures/*.gguf models/ternlm-tinystories.gguf; do
  case "$m" in *tokenizer*) continue ;; esac
  [ -f "$m" ] || continue
  # a fixture the CPU cannot open either (a newer ggml type, say) says nothing about the GPU
  if ! "$B/ternlm" inspect "$m" >/dev/null 2>&1; then echo "skipped, ternlm cannot open it: $(basename "$m")"; continue; fi
  models+=("$m")
done

if want match; then
  step "GPU logits vs CPU logits, bit for bit"
  "$B/tests/test_gpu_match" "${models[@]}" || fails=$((fails + 1))
fi

if want conformance; then
  step "conformance with --gpu (${TERNLM_FIXTURES:-all fixtures present})"
  TERNLM_GPU=1 "$B/tests/test_conformance" file || fails=$((fails + 1))
  for m in "${models[@]}"; do
    a=$("$B/ternlm" run -m "$m" -p "Once upon a time" -n 64 --temp 0 --no-display-prompt 2>/dev/null)
    b=$("$B/ternlm" run -m "$m" -p "Once upon a time" -n 64 --temp 0 --no-display-prompt --gpu 2>/dev/null)
    if [ "$a" = "$b" ]; then echo "same greedy text, CLI run: $(basename "$m")"; else
      echo "DIFFERENT greedy text on $(basename "$m")"; echo " cpu: ${a:0:160}"; echo " gpu: ${b:0:160}"; fails=$((fails + 1)); fi
  done
fi

if want memcheck; then
  step "compute-sanitizer memcheck (prompt path and decode graph)"
  if command -v compute-sanitizer >/dev/null; then
    for m in "${models[@]}"; do
      compute-sanitizer --tool memcheck --error-exitcode 3 --log-file /tmp/cs.log "$B/ternlm" run -m "$m" -p "Once upon a time there was a little dog" \
        -n 4 --gpu >/dev/null 2>&1
      rc=$?
      echo "$(basename "$m"): $(grep -E 'ERROR SUMMARY' /tmp/cs.log | tail -1) (rc $rc)"
      [ $rc = 0 ] || { head -30 /tmp/cs.log; fails=$((fails + 1)); }
    done
  else
    echo "compute-sanitizer not found"
  fi
fi

if want bench; then
  step "bench --gpu on the synthetic 2B4T model"
  [ -f /tmp/2b4t.gguf ] || "$B/ternlm" synth --shape 2b4t --out /tmp/2b4t.gguf >/dev/null
  "$B/ternlm" bench -m /tmp/2b4t.gguf -p 512 -n 128 -r 5 --gpu
  echo "(the same without programmatic dependent launch)"
  TERNLM_CUDA_PDL=0 "$B/ternlm" bench -m /tmp/2b4t.gguf -p 512 -n 128 -r 3 --gpu
fi
if want torch; then
  step "the same shapes as bf16 matmuls in PyTorch"
  python3 tools/cuda_torch_compare.py || true
fi
echo
echo "cuda_check: $fails failed"
[ $fails = 0 ]
