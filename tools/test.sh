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
  local pkgs=(cmake ninja-build gcc make pkgconf clang-14 libclang-rt-14-dev
              clang-19 lld-19 llvm-19 wasi-libc libclang-rt-19-dev-wasm32 wabt
              gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user-static
              emscripten chromium
              libedit-dev libcurl4-openssl-dev python3 nodejs  # the CLI's line editing, downloads and their tests
              libmicrohttpd-dev libcjson-dev pkg-config curl)   # the server and its tests
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
  log "libFuzzer: 6 targets, two at a time on 2 cores (bounded runs; regression corpora in tests/fuzz/)"
  local targets=(fuzz_tokenizer fuzz_gguf fuzz_loader fuzz_memory fuzz_jinja fuzz_chat)
  CC=clang-14 cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTERNLM_FUZZ=ON >/dev/null
  cmake --build build-fuzz -j "$JOBS" --target "${targets[@]}"
  local tmp secs=${TERNLM_FUZZ_SECONDS:-35} failed=0
  tmp=$(mktemp -d)
  mkdir -p "$tmp/fuzz_tokenizer" "$tmp/fuzz_gguf" "$tmp/fuzz_loader" "$tmp/fuzz_memory" "$tmp/fuzz_jinja" "$tmp/fuzz_chat"
  # seeds kept outside the repository: fixtures up to 2 MB whole (complete models and vocabularies, so the GGUF
  # targets start past the header), the first 64 KB of the larger ones; the loader's inputs start with 8 bytes
  # that choose its chunk sizes
  local f name
  for f in ../shared/fixtures/*.gguf ../shared/fixtures/tokenizer/*.gguf; do
    name=$(basename "$f")
    if [ "$(stat -c %s "$f")" -le 2097152 ]; then cp "$f" "$tmp/fuzz_gguf/$name"; else head -c 65536 "$f" >"$tmp/fuzz_gguf/$name"; fi
    cp "$tmp/fuzz_gguf/$name" "$tmp/fuzz_memory/$name"
    { printf 'seed%04d' "${#name}"; cat "$tmp/fuzz_gguf/$name"; } >"$tmp/fuzz_loader/$name"
  done
  run_one() { # target max_len corpus...: bounded run; the last lines give executions and edge coverage
    local t=$1 len=$2
    shift 2
    (cd "$tmp" && "$ROOT/build-fuzz/tests/$t" -max_total_time="$secs" -max_len="$len" -timeout=10 -rss_limit_mb=3072 \
        -print_final_stats=1 "$t" "$@") >"$tmp/$t.log" 2>&1
  }
  report() {
    local t=$1 rc=$2
    printf '%-16s rc=%s  %s  %s\n' "$t" "$rc" "$(grep -o 'Loaded 1 modules *([0-9]* inline' "$tmp/$t.log" | grep -o '[0-9]*' | tail -1) edges" \
      "$(grep -E '^#[0-9]+[[:space:]]+DONE' "$tmp/$t.log" | tail -1)"
    [ "$rc" = 0 ] || { tail -40 "$tmp/$t.log"; failed=$((failed + 1)); }
  }
  local rc_a rc_b pair
  for pair in "fuzz_tokenizer 4096 tests/fuzz/corpus-tokenizer|fuzz_gguf 2400000 tests/fuzz/corpus-gguf" \
              "fuzz_loader 2400000 tests/fuzz/corpus-loader|fuzz_memory 2400000 tests/fuzz/corpus-gguf" \
              "fuzz_jinja 16384 tests/fuzz/corpus-jinja|fuzz_chat 8192 tests/fuzz/corpus-chat"; do
    local a=(${pair%%|*}) b=(${pair##*|})
    run_one "${a[0]}" "${a[1]}" "$ROOT/${a[2]}" & local pa=$!
    run_one "${b[0]}" "${b[1]}" "$ROOT/${b[2]}" & local pb=$!
    rc_a=0; wait "$pa" || rc_a=$?
    rc_b=0; wait "$pb" || rc_b=$?
    report "${a[0]}" "$rc_a"
    report "${b[0]}" "$rc_b"
  done
  rm -rf "$tmp"
  echo "fuzz: $((6 - failed)) passed, $failed failed"
  [ "$failed" = 0 ]
}

wasi() {
  log "WASI build (clang-19 + wasi-libc), tests through node:wasi"
  cmake -S . -B build-wasi -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/wasi.cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-wasi -j "$JOBS"
  ctest --test-dir build-wasi --output-on-failure -j "$JOBS" -E 'conformance_(scalar|avx2|avx512|neon)'
  log "relaxed-SIMD WASI module (built here; tested in Chromium by tests/browser/wasi_relaxed.test.mjs, never in Node)"
  cmake -S . -B build-wasi-relaxed -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/wasi.cmake -DCMAKE_BUILD_TYPE=Release \
    -DTERNLM_WASM_RELAXED=ON >/dev/null
  cmake --build build-wasi-relaxed -j "$JOBS" --target ternlm test_kernels
  wasm-validate --enable-relaxed-simd build-wasi-relaxed/ternlm.wasm
  [ "$(wasm-objdump -d build-wasi-relaxed/ternlm.wasm | grep -c 'i32x4.dot_i8x16_i7x16_add_s')" -gt 0 ]
}

aarch64() {
  log "aarch64 cross build, tests under qemu (i8mm, then neoverse-n1 with dotprod only, then cortex-a53 without it)"
  cmake -S . -B build-arm -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build build-arm -j "$JOBS"
  ctest --test-dir build-arm --output-on-failure -j "$JOBS" -E 'conformance_|^kernels$'
  # the kernel test once, outside ctest, so that its output shows the table under test: qemu's max cpu has i8mm
  qemu-aarch64-static -cpu max -L /usr/aarch64-linux-gnu build-arm/tests/test_kernels | tee /tmp/ternlm-max.log | tail -1
  grep -q "variant on this core: i8mm" /tmp/ternlm-max.log
  local n1=(qemu-aarch64-static -cpu neoverse-n1 -L /usr/aarch64-linux-gnu)
  "${n1[@]}" build-arm/tests/test_kernels | tee /tmp/ternlm-n1.log | tail -1
  grep -q "variant on this core: dotprod" /tmp/ternlm-n1.log
  "${n1[@]}" build-arm/ternlm run -m models/ternlm-tinystories.gguf -p "Once upon a time" -n 150 --temp 0 \
      --no-display-prompt 2>/dev/null | cmp - tests/expected/default-greedy-150.txt
  echo "aarch64 neoverse-n1: 2 passed, 0 failed"
  local q=(qemu-aarch64-static -cpu cortex-a53 -L /usr/aarch64-linux-gnu)
  "${q[@]}" build-arm/tests/test_kernels | tee /tmp/ternlm-a53.log | tail -1
  grep -q "variant on this core: plain" /tmp/ternlm-a53.log
  "${q[@]}" build-arm/tests/test_conformance file | tail -1
  "${q[@]}" build-arm/ternlm run -m models/ternlm-tinystories.gguf -p "Once upon a time" -n 150 --temp 0 \
      --no-display-prompt 2>/dev/null | cmp - tests/expected/default-greedy-150.txt
  for b in q1_0 q2_0; do # Bonsai (issue 16): the native greedy text
    "${q[@]}" build-arm/ternlm run -m ../shared/fixtures/qwen3-bonsai-$b.gguf -p "The capital of France is" -n 32 --temp 0 \
        --no-display-prompt 2>/dev/null | cmp - tests/expected/bonsai-$b-greedy-32.txt
  done
  echo "aarch64 cortex-a53: 5 passed, 0 failed"
}

emscripten() {
  log "Emscripten builds (single-thread and pthreads) and their C tests under Node"
  emcmake cmake -S . -B build-em -G Ninja -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_CROSSCOMPILING_EMULATOR=/usr/bin/node;--no-experimental-fetch" >/dev/null
  cmake --build build-em -j "$JOBS"
  ctest --test-dir build-em --output-on-failure -j "$JOBS" -E 'conformance_(scalar|avx2|avx512|neon)'
  emcmake cmake -S . -B build-em-mt -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERNLM_EMSCRIPTEN_THREADS=ON -DTERNLM_TESTS=OFF >/dev/null
  cmake --build build-em-mt -j "$JOBS" --target ternlm_web
  log "relaxed-SIMD web modules (emcc on clang-19, linked without wasm-opt; tested in Chromium by tests/browser/web_modules.test.mjs)"
  local threads
  for threads in OFF ON; do
    emcmake cmake -S . -B "build-em-relaxed-$threads" -G Ninja -DCMAKE_BUILD_TYPE=Release -DTERNLM_WEB_RELAXED=ON \
      -DTERNLM_EMSCRIPTEN_THREADS=$threads -DTERNLM_TESTS=OFF >/dev/null
    cmake --build "build-em-relaxed-$threads" -j "$JOBS" --target ternlm_web
  done
  for m in web/dist/ternlm-web-relaxed.wasm web/dist/ternlm-web-mt-relaxed.wasm; do
    wasm-validate --enable-relaxed-simd --enable-threads "$m"
    [ "$(wasm-objdump -d "$m" | grep -c 'i32x4.dot_i8x16_i7x16_add_s')" -gt 0 ]
  done
}

javascript() {
  log "Node and browser tests (node:test; Playwright with Debian's Chromium)"
  npm ci --no-audit --no-fund >/dev/null
  node --test tests/node/ tests/browser/
  log "npm package: npm pack web/, install the tarball into an empty folder, import it from Node and Chromium, tsc on its types"
  node --test tests/package/
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
