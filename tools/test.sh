#!/usr/bin/env bash
# Installs what the tests need (Debian + npm only) and runs every test: the native build, the same tests
# under AddressSanitizer + UndefinedBehaviorSanitizer, and every other target the machine can run.
# Usage: tools/test.sh            (from the repository root; CI runs it through .ci/run)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
JOBS=$(nproc)

log() { printf '\n=== %s\n' "$*"; }

install_deps() {
  local pkgs=(cmake ninja-build gcc make clang-14 libclang-rt-14-dev
              clang-19 lld-19 llvm-19 wasi-libc libclang-rt-19-dev-wasm32 wabt
              gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
              emscripten chromium libmicrohttpd-dev libcjson-dev pkg-config curl)
  local missing=()
  for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

native() {
  log "native build (Release) and tests"
  cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build -j "$JOBS"
  ctest --test-dir build --output-on-failure -j "$JOBS"
}

sanitized() {
  log "ASan + UBSan build and tests"
  cmake -S . -B build-san -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTERNLM_SANITIZE=ON >/dev/null
  cmake --build build-san -j "$JOBS"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-san --output-on-failure -j "$JOBS"
}

fuzz() {
  log "libFuzzer: tokenizer and GGUF reader (bounded runs; regression corpora in tests/fuzz/)"
  CC=clang-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTERNLM_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j "$JOBS" --target fuzz_tokenizer fuzz_gguf
  local tmp
  tmp=$(mktemp -d)
  mkdir -p "$tmp/tok" "$tmp/gguf"
  # seeds for the GGUF fuzzer: the first 4 KB of every fixture (kept outside the repository)
  for f in ../shared/fixtures/*.gguf ../shared/fixtures/tokenizer/*.gguf; do head -c 4096 "$f" >"$tmp/gguf/$(basename "$f")"; done
  (cd "$tmp" && "$ROOT/build-fuzz/tests/fuzz_tokenizer" -max_total_time="${TERNLM_FUZZ_SECONDS:-30}" -max_len=2048 \
      tok "$ROOT/tests/fuzz/corpus-tokenizer") 2>&1 | tail -2
  (cd "$tmp" && "$ROOT/build-fuzz/tests/fuzz_gguf" -max_total_time="${TERNLM_FUZZ_SECONDS:-30}" -max_len=8192 \
      gguf "$ROOT/tests/fuzz/corpus-gguf") 2>&1 | tail -2
  rm -rf "$tmp"
  echo "fuzz: 2 passed, 0 failed"
}

wasi() {
  log "WASI build (clang-19 + wasi-libc), tests through node:wasi"
  cmake -S . -B build-wasi -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/wasi.cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-wasi -j "$JOBS"
  ctest --test-dir build-wasi --output-on-failure -j "$JOBS" -E 'conformance_(scalar|avx2|avx512|neon)'
}

aarch64() {
  log "aarch64 cross build, tests under qemu (dotprod, then cortex-a53 without it)"
  cmake -S . -B build-arm -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-arm -j "$JOBS"
  ctest --test-dir build-arm --output-on-failure -j "$JOBS" -E 'conformance_'
  local q=(qemu-aarch64-static -cpu cortex-a53 -L /usr/aarch64-linux-gnu)
  "${q[@]}" build-arm/tests/test_kernels | tee /tmp/ternlm-a53.log | tail -1
  grep -q "variant on this core: plain" /tmp/ternlm-a53.log
  "${q[@]}" build-arm/tests/test_conformance file | tail -1
  "${q[@]}" build-arm/ternlm run -m models/ternlm-tinystories.gguf -p "Once upon a time" -n 150 --temp 0 \
      --no-display-prompt 2>/dev/null | cmp - tests/expected/default-greedy-150.txt
  echo "aarch64 cortex-a53: 3 passed, 0 failed"
}

emscripten() {
  log "Emscripten builds (single-thread and pthreads) and their C tests under Node"
  emcmake cmake -S . -B build-em -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CROSSCOMPILING_EMULATOR=/usr/bin/node;--no-experimental-fetch" >/dev/null
  cmake --build build-em -j "$JOBS"
  ctest --test-dir build-em --output-on-failure -j "$JOBS" -E 'conformance_(scalar|avx2|avx512|neon)'
  emcmake cmake -S . -B build-em-mt -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERNLM_EMSCRIPTEN_THREADS=ON -DTERNLM_TESTS=OFF >/dev/null
  cmake --build build-em-mt -j "$JOBS" --target ternlm_web
}

javascript() {
  log "Node and browser tests (node:test; Playwright with Debian's Chromium)"
  npm ci --no-audit --no-fund >/dev/null
  node --test tests/node/ tests/browser/
}

server() {
  log "ternlm-server: openai client, curl and load tests (native build, then the ASan + UBSan build)"
  npm ci --no-audit --no-fund >/dev/null
  test -x build/ternlm-server && test -x build-san/ternlm-server
  node --test tests/server/
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    TERNLM_SERVER=build-san/ternlm-server TERNLM_SERVER_SANITIZED=1 node --test tests/server/
}

cuda() {
  log "CUDA backend: compiled with nvcc for sm_80, sm_89, sm_90 (its GPU tests skip without a GPU)"
  local nvcc
  nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
  cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERNLM_CUDA=ON -DTERNLM_EMBED_MODEL=OFF \
    -DCMAKE_CUDA_COMPILER="$nvcc" >/dev/null
  cmake --build build-cuda -j "$JOBS"
  ctest --test-dir build-cuda --output-on-failure -R 'conformance_gpu|gpu_match|types|kernels'
}

install_deps
native
sanitized
fuzz
wasi
emscripten
javascript
server
cuda
aarch64
log "all tests passed"
