#!/usr/bin/env bash
# The installable C library: `cmake --install` into a temporary prefix gives ternlm.h, libternlm.a, libternlm.so
# (exporting only ternlm_* symbols), the CLI, a pkg-config file and a CMake package; examples/c builds against
# that copy with pkg-config (make) and with CMake (shared and static), and its greedy text equals the CLI's.
#   install_test.sh BUILD_DIR SOURCE_DIR C_COMPILER [EXTRA_CFLAGS]    (EXTRA_CFLAGS: the sanitizer flags, if any)
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
cc=$3
extra=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0
fail=0
ok() { echo "ok: $*"; pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fail=$((fail + 1)); }
check() { local what=$1; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }

prefix=$tmp/prefix
cmake --install "$build" --prefix "$prefix" >"$tmp/install.log"
libdir=$(dirname "$(find "$prefix" -name ternlm.pc)")/..
libdir=$(cd "$libdir" && pwd)

for f in bin/ternlm include/ternlm.h; do check "installed $f" test -f "$prefix/$f"; done
for f in libternlm.a libternlm.so pkgconfig/ternlm.pc cmake/ternlm/ternlmConfig.cmake cmake/ternlm/ternlmConfigVersion.cmake \
         cmake/ternlm/ternlmTargets.cmake; do
  check "installed lib/$f" test -e "$libdir/$f"
done
soname=$(readelf -d "$libdir/libternlm.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
check "libternlm.so has a SONAME ($soname) that is installed" test -e "$libdir/$soname"
leaked=$(nm -D --defined-only "$libdir/libternlm.so" | awk '$2 ~ /[TDBR]/ && $3 !~ /^ternlm_/ {print $3}' | grep -v '^_' || true)
check "libternlm.so exports only ternlm_* (leaked: ${leaked:-none})" test -z "$leaked"
nm -D --defined-only "$libdir/libternlm.so" >"$tmp/nm.txt"
check "libternlm.so exports the API" grep -q ' T ternlm_generate$' "$tmp/nm.txt"
check "the installed CLI runs" bash -c "'$prefix/bin/ternlm' --help >/dev/null"

# the same greedy text from the example as from the CLI, for each build of the example
models=("$src/models/ternlm-tinystories.gguf" "$src/../shared/fixtures/b158-llama3-i2s.gguf")
same_text() { # EXE LABEL
  local exe=$1 label=$2 m want got
  for m in "${models[@]}"; do
    want=$("$prefix/bin/ternlm" run -m "$m" -p "Once upon a time" -n 24 --temp 0 --no-display-prompt 2>/dev/null)
    got=$(LD_LIBRARY_PATH=$libdir "$exe" "$m" "Once upon a time" 24 2>"$tmp/stderr") || { cat "$tmp/stderr"; bad "$label on $(basename "$m") failed"; continue; }
    if [ -n "$want" ] && [ "$got" = "$want" ]; then ok "$label: native CLI's greedy text on $(basename "$m")"; else bad "$label on $(basename "$m"): '$got' != '$want'"; fi
  done
}
# (output to a file first: grep -q closing a pipe early would fail the pipeline under pipefail)
uses_installed_so() { LD_LIBRARY_PATH=$libdir ldd "$1" >"$tmp/ldd.txt" && grep -q "$libdir/libternlm.so" "$tmp/ldd.txt"; }

export PKG_CONFIG_PATH=$libdir/pkgconfig
check "pkg-config --modversion is 0.1.0" test "$(pkg-config --modversion ternlm)" = 0.1.0
cp -r "$src/examples/c" "$tmp/example"
if make -s -C "$tmp/example" CC="$cc" LDFLAGS="$extra" CFLAGS="-O2 -Wall -Wextra -Werror -std=c11 $extra" >"$tmp/make.log" 2>&1; then
  ok "examples/c builds with pkg-config (make)"
  check "pkg-config build links the installed libternlm.so" uses_installed_so "$tmp/example/generate"
  same_text "$tmp/example/generate" "pkg-config build"
else
  cat "$tmp/make.log"; bad "examples/c builds with pkg-config (make)"
fi

for kind in shared static; do
  static=OFF; [ $kind = static ] && static=ON
  if cmake -S "$tmp/example" -B "$tmp/cmake-$kind" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$cc" \
       -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" -DTERNLM_EXAMPLE_STATIC=$static >"$tmp/cmake.log" 2>&1 &&
     cmake --build "$tmp/cmake-$kind" >>"$tmp/cmake.log" 2>&1; then
    ok "examples/c builds with find_package(ternlm), $kind"
    if [ $kind = shared ]; then
      check "CMake shared build links the installed libternlm.so" uses_installed_so "$tmp/cmake-$kind/generate"
    else
      ldd "$tmp/cmake-$kind/generate" >"$tmp/ldd.txt"
      check "CMake static build needs no libternlm.so" bash -c "! grep -q libternlm '$tmp/ldd.txt'"
    fi
    same_text "$tmp/cmake-$kind/generate" "CMake $kind build"
  else
    cat "$tmp/cmake.log"; bad "examples/c builds with find_package(ternlm), $kind"
  fi
done

# the pkg-config file follows the tree when the prefix moves
mv "$prefix" "$tmp/moved"
export PKG_CONFIG_PATH=${libdir/$prefix/$tmp/moved}/pkgconfig
check "a moved prefix: pkg-config points into it" grep -q -- "-I$tmp/moved/" <<<"$(pkg-config --cflags ternlm)"

echo "install: $pass passed, $fail failed"
[ "$fail" = 0 ]
