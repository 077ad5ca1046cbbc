#!/usr/bin/env bash
# Builds (if needed), checks and times the CUDA backend in one go, on a machine with an NVIDIA GPU.
#   TERNLM_SHARED_DIR=../shared tools/cuda_check.sh [BUILD_DIR]
# Conformance through --gpu, greedy text equal to the CPU's, compute-sanitizer on the fixtures, `ternlm bench --gpu`
# on the synthetic 2B4T model, and the same shapes as bf16 matmuls in PyTorch (tools/cuda_torch_compare.py).
set -u
B=${1:-build-cuda}
S=${TERNLM_SHARED_DIR:-../shared}
export TERNLM_SHARED_DIR=$S
fails=0
step() { printf '\n=== %s\n' "$*"; }
if [ ! -x "$B/ternlm" ]; then
  cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DTERNLM_CUDA=ON -DTERNLM_EMBED_MODEL=OFF && cmake --build "$B" -j || exit 1
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

step "conformance with --gpu (${TERNLM_FIXTURES:-all fixtures})"
TERNLM_GPU=1 "$B/tests/test_conformance" file || fails=$((fails + 1))

step "greedy text: GPU vs CPU"
for m in models/ternlm-tinystories.gguf "$S/fixtures/b158-llama3-i2s.gguf" "$S/fixtures/llama-stories260k.gguf"; do
  [ -f "$m" ] || continue
  a=$("$B/ternlm" run -m "$m" -p "Once upon a time" -n 64 --temp 0 --no-display-prompt 2>/dev/null)
  b=$("$B/ternlm" run -m "$m" -p "Once upon a time" -n 64 --temp 0 --no-display-prompt --gpu 2>/dev/null)
  if [ "$a" = "$b" ]; then echo "same greedy text on $(basename "$m")"; else
    echo "DIFFERENT on $(basename "$m")"; echo " cpu: ${a:0:160}"; echo " gpu: ${b:0:160}"; fails=$((fails + 1)); fi
done

step "compute-sanitizer (memcheck) on the fixtures"
if command -v compute-sanitizer >/dev/null; then
  for m in models/ternlm-tinystories.gguf "$S/fixtures/b158-llama3-i2s.gguf" "$S/fixtures/llama-stories260k.gguf"; do
    [ -f "$m" ] || continue
    compute-sanitizer --tool memcheck --error-exitcode 3 "$B/ternlm" run -m "$m" -p "Hello world" -n 6 --gpu >/dev/null 2>/tmp/cs.log
    rc=$?
    tail -1 /tmp/cs.log
    [ $rc = 0 ] || { echo "memcheck failed on $m (rc $rc)"; fails=$((fails + 1)); }
  done
else
  echo "compute-sanitizer not found"
fi

step "bench --gpu on the synthetic 2B4T model"
[ -f /tmp/2b4t.gguf ] || "$B/ternlm" synth --shape 2b4t --out /tmp/2b4t.gguf
"$B/ternlm" bench -m /tmp/2b4t.gguf -p 512 -n 128 -r 3 --gpu --json
step "the same shapes as bf16 matmuls in PyTorch"
python3 tools/cuda_torch_compare.py || true
echo
echo "cuda_check: $fails failed"
[ $fails = 0 ]
