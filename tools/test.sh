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
  local pkgs=(cmake ninja-build gcc make clang-14 libclang-rt-14-dev)
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

install_deps
native
sanitized
fuzz
log "all tests passed"
