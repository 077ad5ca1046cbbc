#!/usr/bin/env bash
# The WASI build of the CLI as wasmtime would run it (through node/ternlm-wasi.mjs): imports, validity, and the
# same output as native. usage: wasi_test.sh ternlm.wasm REPO_ROOT
set -u
W=$1
R=$2
S=$R/../shared
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
run() { node --no-warnings "$R/node/ternlm-wasi.mjs" --dir=/ "$W" "$@"; }

wasm-validate "$W" && ok || bad "wasm-validate"
other=$(wasm-objdump -x -j Import "$W" | grep -- ' <- ' | grep -vc 'wasi_snapshot_preview1\.')
[ "$other" = 0 ] && ok || bad "the module imports $other functions from outside wasi_snapshot_preview1"
[ "$(wasm-objdump -d "$W" | grep -c 'i32x4.dot_i16x8_s')" -gt 0 ] && ok || bad "SIMD128 dot instructions missing"

out=$(run run -m "$R/models/ternlm-tinystories.gguf" -p "Once upon a time" -n 150 --temp 0 --no-display-prompt 2>/dev/null)
[ "$out" = "$(cat "$R/tests/expected/default-greedy-150.txt")" ] && ok || bad "default model greedy text differs from native"
out=$(run tokenize -m "$S/fixtures/tokenizer/llama3-vocab.gguf" --ids "<|begin_of_text|>hello<|eot_id|>")
[ "$out" = "128000 15339 128009" ] && ok || bad "tokenize: $out"
out=$(run run -m "$S/fixtures/llama-stories260k.gguf" -p "Once upon a time" -n 30 --temp 0 2>/dev/null)
case "$out" in *"there was a little girl named Lily"*) ok ;; *) bad "stories260k greedy: $out" ;; esac
for q in q1_0 q2_0; do # Bonsai (qwen3, issue 16): the same greedy text as native
  run run -m "$S/fixtures/qwen3-bonsai-$q.gguf" -p "The capital of France is" -n 32 --temp 0 --no-display-prompt 2>/dev/null |
    cmp -s - "$R/tests/expected/bonsai-$q-greedy-32.txt" && ok || bad "bonsai $q greedy text differs from native"
done
run inspect "$S/fixtures/b158-llama3-i2s.gguf" | grep -q "validation: ok" && ok || bad "inspect b158"
run inspect /nonexistent.gguf >/dev/null 2>&1
[ $? = 1 ] && ok || bad "a missing file must exit 1"
run run --bogus >/dev/null 2>&1
[ $? = 2 ] && ok || bad "a bad flag must exit 2"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
