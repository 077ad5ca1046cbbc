#!/usr/bin/env bash
# The ternlm CLI as a user runs it: exit codes (0 ok, 1 bad model, 2 usage), streaming, inspect, tokenize, logits.
# usage: cli_test.sh PATH/TO/ternlm SHARED_DIR
set -u
T=$1
S=$2
F=$S/fixtures
pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
expect_rc() { # expect_rc WANT DESCRIPTION -- command...
  local want=$1 what=$2
  shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"
  local rc=$?
  if [ "$rc" = "$want" ]; then ok; else bad "$what: exit $rc, want $want; stderr: $(head -c 300 "$tmp/err")"; fi
}
contains() { # contains FILE TEXT DESCRIPTION
  if grep -qF -- "$2" "$1"; then ok; else bad "$3: '$2' not in $(head -c 300 "$1")"; fi
}

# usage errors exit 2
expect_rc 2 "unknown flag" -- "$T" run --no-such-flag
contains "$tmp/err" "unknown option '--no-such-flag'" "unknown flag message"
expect_rc 2 "bad value" -- "$T" run -m "$F/llama-stories260k.gguf" -p hi --temp abc
contains "$tmp/err" "bad value 'abc' for --temp" "bad value message"
expect_rc 2 "unknown command" -- "$T" frobnicate
expect_rc 2 "logits needs -m" -- "$T" logits --tokens 1,2
expect_rc 0 "help" -- "$T" run --help
contains "$tmp/out" "--repeat-penalty" "run --help lists options"
for c in chat inspect logits tokenize; do expect_rc 0 "$c --help" -- "$T" $c --help; done

# bad model files exit 1 with a message that names the problem
expect_rc 1 "missing file" -- "$T" inspect "$tmp/nope.gguf"
contains "$tmp/err" "cannot open" "missing file message"
head -c 5000 "$F/llama-stories260k.gguf" >"$tmp/trunc.gguf"
expect_rc 1 "truncated file" -- "$T" run -m "$tmp/trunc.gguf" -p hi
contains "$tmp/err" "trunc.gguf: " "truncated file message names the file"
printf 'GGML0000000000000000000000000000' >"$tmp/notgguf.gguf"
expect_rc 1 "not a gguf" -- "$T" inspect "$tmp/notgguf.gguf"
contains "$tmp/err" "not a GGUF file" "not-a-GGUF message"
cp "$F/llama-stories260k.gguf" "$tmp/corrupt.gguf"
printf '\xff\xff\xff\xff' | dd of="$tmp/corrupt.gguf" bs=1 seek=24 conv=notrunc 2>/dev/null
expect_rc 1 "corrupted key length" -- "$T" inspect "$tmp/corrupt.gguf"
contains "$tmp/err" "metadata key at byte 24" "corrupted file message"

# inspect prints a complete table for every fixture
for m in b158-llama3-i2s bitnet-spm-tq2_0 bitnet-spm-tq1_0 llama-stories260k; do
  expect_rc 0 "inspect $m" -- "$T" inspect "$F/$m.gguf"
  contains "$tmp/out" "validation: ok" "inspect $m validation"
  want=$("$T" inspect --json "$F/$m.gguf" | grep -o '"name":' | wc -l)
  got=$(sed -n '/^tensors (/,/^$/p' "$tmp/out" | tail -n +3 | grep -c .)
  [ "$want" -gt 0 ] && [ "$want" = "$got" ] && ok || bad "inspect $m: $got table rows, $want tensors"
done
expect_rc 0 "inspect --system" -- "$T" inspect --system
contains "$tmp/out" "cpu kernels:" "inspect --system"

# run streams text; stories260K greedy from BOS is karpathy's sample
expect_rc 0 "run stories" -- "$T" run -m "$F/llama-stories260k.gguf" -p "Once upon a time" -n 40 --temp 0
contains "$tmp/out" "Once upon a time, there was a little girl named Lily" "greedy story"
contains "$tmp/err" "generation 40 tokens" "timings on stderr"
expect_rc 0 "run b158 (llama-cli spelling)" -- "$T" -m "$F/b158-llama3-i2s.gguf" -p "Hello" -n 8 -t 2 -c 64 -s 3 --temp 0.7
contains "$tmp/err" "generation" "b158 generation stats"
expect_rc 0 "run tq1" -- "$T" run -m "$F/bitnet-spm-tq1_0.gguf" -p "Hello" -n 8 --no-display-prompt
expect_rc 0 "seeded runs repeat" -- "$T" run -m "$F/llama-stories260k.gguf" -p "Lily" -n 30 -s 7
cp "$tmp/out" "$tmp/first"
"$T" run -m "$F/llama-stories260k.gguf" -p "Lily" -n 30 -s 7 >"$tmp/second" 2>/dev/null
cmp -s "$tmp/first" "$tmp/second" && ok || bad "the same seed must give the same text"

# tokenize: --ids prints ids only; stdin is read byte for byte
expect_rc 0 "tokenize --ids" -- "$T" tokenize -m "$S/fixtures/tokenizer/llama3-vocab.gguf" --ids "<|begin_of_text|>hello<|eot_id|>"
[ "$(cat "$tmp/out")" = "128000 15339 128009" ] && ok || bad "tokenize --ids: $(cat "$tmp/out")"
expect_rc 0 "tokenize --no-special" -- "$T" tokenize -m "$S/fixtures/tokenizer/llama3-vocab.gguf" --ids --no-special "<|begin_of_text|>hello<|eot_id|>"
[ "$(cat "$tmp/out")" = "27 91 7413 3659 4424 91 29 15339 27 91 68 354 851 91 29" ] && ok || bad "--no-special: $(cat "$tmp/out")"
printf '  Hello' | "$T" tokenize -m "$S/fixtures/tokenizer/llama3-vocab.gguf" --ids - >"$tmp/out"
[ "$(cat "$tmp/out")" = "220 22691" ] && ok || bad "tokenize stdin: $(cat "$tmp/out")"
"$T" tokenize -m "$F/b158-llama3-i2s.gguf" --bos "Hi" >"$tmp/out" 2>/dev/null
[ "$(head -1 "$tmp/out")" = "$(printf '128000\t<|begin_of_text|>')" ] && ok || bad "tokenize table: $(head -1 "$tmp/out")"

# logits: top-5 text and raw float32 output
expect_rc 0 "logits top5" -- "$T" logits -m "$F/llama-stories260k.gguf" --tokens 1,403,407
[ "$(grep -c '^[0-9]*:' "$tmp/out")" = 3 ] && ok || bad "logits prints one line per position"
expect_rc 0 "logits --out" -- "$T" logits -m "$F/llama-stories260k.gguf" --tokens 1,403 --out "$tmp/l.f32"
[ "$(stat -c %s "$tmp/l.f32")" = $((2 * 512 * 4)) ] && ok || bad "logits --out size"
expect_rc 2 "logits bad ids" -- "$T" logits -m "$F/llama-stories260k.gguf" --tokens 1,x
expect_rc 1 "logits id out of range" -- "$T" logits -m "$F/llama-stories260k.gguf" --tokens 1,99999
contains "$tmp/err" "outside the vocabulary" "out-of-range id message"

# chat: multi-turn from stdin; /reset and /exit; each turn reports what it evaluated
printf 'Hello\nHow are you?\n/reset\nHi again\n/exit\n' | "$T" chat -m "$F/b158-llama3-i2s.gguf" -n 4 --temp 0 --verbose >"$tmp/out" 2>"$tmp/err"
[ $? = 0 ] && ok || bad "chat exit code"
contains "$tmp/err" "(conversation cleared)" "chat /reset"
[ "$(grep -o '\[turn:' "$tmp/err" | wc -l)" = 3 ] && ok || bad "chat: three turns expected"
# turn 2 evaluates fewer tokens than the context then holds: turn 1 is not evaluated again
line2=$(grep -o '\[turn:[^]]*' "$tmp/err" | sed -n 2p)
evaluated=$(echo "$line2" | sed 's/.* \([0-9]*\) evaluated.*/\1/')
context=$(echo "$line2" | sed 's/.*context \([0-9]*\)\/.*/\1/')
[ -n "$evaluated" ] && [ "$evaluated" -lt "$context" ] && ok || bad "chat turn 2 evaluated $evaluated tokens for a context of $context"

# synth + bench: a real-shaped random model and llama-bench style JSON
expect_rc 0 "synth tiny" -- "$T" synth --shape tiny --out "$tmp/tiny.gguf" --seed 3
expect_rc 0 "inspect synth" -- "$T" inspect --check-tensors "$tmp/tiny.gguf"
contains "$tmp/out" "validation: ok" "synthetic model validates"
expect_rc 0 "bench --json" -- "$T" bench -m "$tmp/tiny.gguf" -p 16 -n 4 -r 2 --json
contains "$tmp/out" '"test":"pp16"' "bench pp line"
contains "$tmp/out" '"median_tps":' "bench median"
expect_rc 0 "bench --tokenizer" -- "$T" bench --tokenizer -m "$S/fixtures/tokenizer/llama3-vocab.gguf" -r 1
contains "$tmp/out" "MB/s" "tokenizer throughput"
expect_rc 2 "synth bad shape" -- "$T" synth --shape 9b --out "$tmp/x.gguf"
# synth --type writes valid TQ2_0 / TQ1_0 files; bench says what it ran (repacking, int8 head)
for ty in tq2_0 tq1_0; do
  expect_rc 0 "synth --type $ty" -- "$T" synth --shape tiny --type $ty --out "$tmp/tiny-$ty.gguf"
  expect_rc 0 "inspect $ty" -- "$T" inspect --check-tensors "$tmp/tiny-$ty.gguf"
  contains "$tmp/out" "validation: ok" "synthetic $ty model validates"
done
expect_rc 2 "synth bad type" -- "$T" synth --shape tiny --type q4_0 --out "$tmp/x.gguf"
expect_rc 0 "bench int8 head" -- "$T" bench -m "$tmp/tiny-tq1_0.gguf" -p 8 -n 2 -r 1 --head-quant i8 --json
contains "$tmp/out" '"head":"I8 (from F16)"' "bench reports the int8 head"
expect_rc 0 "bench int4 head" -- "$T" bench -m "$tmp/tiny-tq1_0.gguf" -p 8 -n 2 -r 1 --head-quant i4 --json
contains "$tmp/out" '"head":"I4 (from F16)"' "bench reports the int4 head"
expect_rc 2 "bad --head-quant" -- "$T" run -m "$tmp/tiny.gguf" -p hi -n 1 --head-quant i3
contains "$tmp/err" "q8_0, i8 or i4" "a bad --head-quant names the choices"
expect_rc 0 "bench no repack" -- "$T" bench -m "$tmp/tiny.gguf" -p 8 -n 2 -r 1 --no-repack
contains "$tmp/out" "repack off" "bench reports repacking off"
# bench --streams: batched steps of S streams (issue 17), one JSON line per stream count; a bad list is a usage error
expect_rc 0 "bench --streams" -- "$T" bench -m "$tmp/tiny.gguf" --streams 1,3 -n 3 -r 1 --json
contains "$tmp/out" '"test":"streams","streams":3,"steps":3' "bench streams line"
contains "$tmp/out" '"median_step_ms":' "bench streams step time"
expect_rc 2 "bench bad --streams" -- "$T" bench -m "$tmp/tiny.gguf" --streams 2,x
contains "$tmp/err" "--streams takes a list" "bench bad --streams message"

# the embedded default model: the README's command writes at least 100 tokens, and every kernel path this
# machine runs gives the same greedy text (tests/expected/default-greedy-150.txt, also checked on WASI and wasm)
if "$T" run --help | grep -q "embedded"; then
  expect_rc 0 "README main command" -- "$T" run -p "Once upon a time" -n 120 --ignore-eos
  contains "$tmp/err" "generation 120 tokens" "default model writes 120 tokens"
  for k in scalar avx2 avx512 neon wasm128; do
    TERNLM_KERNELS=$k "$T" run -p "Once upon a time" -n 150 --temp 0 --no-display-prompt >"$tmp/greedy" 2>/dev/null
    rc=$?
    [ $rc = 2 ] && continue # this CPU or build lacks the path
    cmp -s "$tmp/greedy" "$(dirname "$0")/expected/default-greedy-150.txt" && ok || bad "default model greedy text differs on kernels $k"
  done
fi
# Bonsai (qwen3, Q1_0 / Q2_0; issue 16): one greedy text on every kernel path and thread count (also WASI, aarch64)
for b in q1_0 q2_0; do
  for k in scalar avx2 avx512 neon wasm128; do
    for t in 1 2; do
      TERNLM_KERNELS=$k "$T" run -m "$S/fixtures/qwen3-bonsai-$b.gguf" -p "The capital of France is" -n 32 --temp 0 -t $t \
        --no-display-prompt >"$tmp/greedy" 2>/dev/null
      [ $? = 2 ] && continue
      cmp -s "$tmp/greedy" "$(dirname "$0")/expected/bonsai-$b-greedy-32.txt" && ok || bad "bonsai $b greedy text differs on $k -t $t"
    done
  done
done

# ---- issue 11: what a new user hit (each fails on the code before the fix) ----
not_contains() { # not_contains FILE TEXT DESCRIPTION
  if grep -qF -- "$2" "$1"; then bad "$3: '$2' found in $(head -c 300 "$1")"; else ok; fi
}
S260="$F/llama-stories260k.gguf"
expect_rc 0 "-v prints the version" -- "$T" -v
[ "$(head -c 7 "$tmp/out")" = "ternlm " ] && ok || bad "ternlm -v: $(head -c 100 "$tmp/out")"
not_contains "$tmp/err" "generation" "ternlm -v does not generate"
expect_rc 0 "run --version" -- "$T" run --version
contains "$tmp/out" "ternlm 0." "run --version"
expect_rc 2 "--pre bogus is a usage error" -- "$T" run -m "$S260" -p hi -n 2 --pre bogus
contains "$tmp/err" "unknown pre-tokenizer 'bogus'" "--pre bogus message"
expect_rc 2 "--pre bogus is a usage error (BPE vocabulary)" -- "$T" run -m "$F/b158-llama3-i2s.gguf" -p hi -n 2 --pre bogus
expect_rc 2 "--top-p -1 is a usage error" -- "$T" run -m "$S260" -p hi -n 2 --top-p -1
contains "$tmp/err" "--top-p -1 is out of range" "--top-p message"
expect_rc 2 "--min-p 2 is a usage error" -- "$T" run -m "$S260" -p hi -n 2 --min-p 2
expect_rc 1 "run -f DIRECTORY" -- "$T" run -m "$S260" -f "$tmp" -n 2
contains "$tmp/err" "is a directory" "run -f DIRECTORY message"
expect_rc 1 "run -f missing" -- "$T" run -m "$S260" -f "$tmp/none.txt" -n 2
contains "$tmp/err" "No such file" "run -f missing message"
TERNLM_KERNELS=bogus "$T" inspect --system >"$tmp/out" 2>"$tmp/err"; a=$?
TERNLM_KERNELS=bogus "$T" run -m "$S260" -p hi -n 2 >/dev/null 2>"$tmp/err2"; b=$?
[ "$a" = 2 ] && [ "$b" = 2 ] && ok || bad "TERNLM_KERNELS=bogus: inspect exit $a, run exit $b (want 2 and 2)"
contains "$tmp/err" "TERNLM_KERNELS=bogus is not a kernel path" "inspect names the bad TERNLM_KERNELS"
cmp -s "$tmp/err" "$tmp/err2" && ok || bad "inspect and run must say the same about TERNLM_KERNELS"
expect_rc 0 "-t 100000 is capped" -- timeout 60 "$T" run -m "$S260" -p hi -n 4 -t 100000
contains "$tmp/err" "more than 4 threads per core" "-t cap warning"
expect_rc 0 "-ngl and -b are accepted" -- "$T" run -m "$S260" -p hi -n 2 -ngl 99 -b 512
contains "$tmp/err" "-ngl 99 ignored" "-ngl note"
contains "$tmp/err" "-b 512 ignored" "-b note"
expect_rc 0 "-c above the trained context" -- "$T" run -m "$S260" -p hi -n 2 -c 1000000
contains "$tmp/err" "above the model's trained context of 2048 tokens: using 2048" "-c cap warning"
expect_rc 0 "a full context is reported" -- "$T" run -m "$S260" -p "Once upon a time" -n -1 --ignore-eos -c 24
contains "$tmp/err" "the context of 24 tokens is full" "full context notice"
expect_rc 0 "--seed -1" -- "$T" run -m "$S260" -p hi -n 2 --seed -1
expect_rc 0 "-temp (bitnet.cpp spelling)" -- "$T" run -m "$S260" -p "Once upon a time" -n 40 -temp 0
contains "$tmp/out" "there was a little girl named Lily" "-temp 0 is greedy"
expect_rc 0 "--stop" -- "$T" run -m "$S260" -p "Once upon a time" -n 40 --temp 0 -r " named" --stop "zzz"
contains "$tmp/out" "there was a little girl" "--stop keeps the text before the stop string"
not_contains "$tmp/out" "named" "--stop drops the stop string and what follows"
expect_rc 0 "--verbose-prompt" -- "$T" run -m "$S260" -p "Once upon" -n 2 --verbose-prompt
contains "$tmp/err" "prompt: 3 tokens" "--verbose-prompt lists the tokens"
expect_rc 0 "--color" -- "$T" run -m "$S260" -p "Once" -n 2 --color
contains "$tmp/out" "$(printf '\033[33mOnce\033[0m')" "--color colours the prompt"
# Ctrl-C during run stops it with exit 130 (the handler is installed even though bash starts it with SIGINT ignored)
"$T" run -m "$S260" -p "Once upon a time" -n -1 --ignore-eos >/dev/null 2>"$tmp/err" &
pid=$!
sleep 0.5
kill -INT $pid
wait $pid
rc=$?
[ "$rc" = 130 ] && ok || bad "Ctrl-C during run: exit $rc, want 130"
# inspect escapes terminal control sequences from metadata (text and JSON)
python3 "$(dirname "$0")/cli/hostile_gguf.py" "$S260" "$tmp/hostile.gguf"
expect_rc 0 "inspect hostile metadata" -- "$T" inspect "$tmp/hostile.gguf"
[ "$(tr -dc '\033\233' <"$tmp/out" | wc -c)" = 0 ] && ok || bad "inspect printed raw ESC/CSI bytes"
contains "$tmp/out" '\x1b]0;pwned\x07\x1b[31mred' "inspect shows the escapes"
contains "$tmp/out" '\x9b2J \u202eevil \xff end' "inspect escapes C1, bidi and invalid bytes"
expect_rc 0 "inspect --json hostile metadata" -- "$T" inspect --json "$tmp/hostile.gguf"
[ "$(tr -dc '\033\233' <"$tmp/out" | wc -c)" = 0 ] && ok || bad "inspect --json printed raw ESC/CSI bytes"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["metadata"]["general.description"].startswith("\x1b]0;pwned")' "$tmp/out" \
  && ok || bad "inspect --json is valid JSON with the escaped string"

# ---- conversation mode from a pipe (the terminal side is tests/cli/chat_pty.py) ----
B158="$F/b158-llama3-i2s.gguf"
printf 'Hi\n' | "$T" run -cnv -m "$B158" -p "You are terse." -n 4 --temp 0 --verbose >"$tmp/out" 2>"$tmp/err"
[ $? = 0 ] && ok || bad "run -cnv exit code"
[ "$(grep -c '\[turn:' "$tmp/err")" = 1 ] && ok || bad "run -cnv: one turn expected: $(head -c 300 "$tmp/err")"
printf 'Hi\n' | "$T" run -i -m "$B158" -n 2 --temp 0 --verbose >/dev/null 2>"$tmp/err" && contains "$tmp/err" "[turn:" "run -i is conversation mode"
printf 'first\\\nsecond\n' | "$T" chat -m "$B158" -n 2 --temp 0 -sys "Be brief." --verbose-prompt >/dev/null 2>"$tmp/err"
contains "$tmp/err" '[message: 12 bytes] first\nsecond' "a trailing backslash continues the message"
printf '/help\n/exit\nnever sent\n' | "$T" chat -m "$B158" -n 2 --temp 0 --verbose >/dev/null 2>"$tmp/err"
contains "$tmp/err" "/reset: start over" "/help lists the commands"
not_contains "$tmp/err" "[turn:" "/exit ends the chat before the next line"
printf 'Hi\n' | "$T" chat -m "$B158" -n 2 --temp 0 --chat-template llama3 --verbose >/dev/null 2>"$tmp/err"
contains "$tmp/err" "[turn:" "--chat-template llama3"
printf '{%% for m in messages %%}<<{{ m.role }}>>{{ m.content }}{%% endfor %%}{%% if add_generation_prompt %%}<<assistant>>{%% endif %%}' >"$tmp/t.jinja"
printf 'Hi\n' | "$T" chat -m "$B158" -n 2 --temp 0 --chat-template "$tmp/t.jinja" --verbose >/dev/null 2>"$tmp/err"
contains "$tmp/err" "[turn: 7 new prompt tokens" "--chat-template FILE renders the file's template"
expect_rc 2 "--chat-template chatml needs its tokens" -- "$T" chat -m "$B158" --chat-template chatml
contains "$tmp/err" "needs header tokens" "--chat-template chatml message"
expect_rc 2 "--chat-template missing file" -- "$T" chat -m "$B158" --chat-template "$tmp/none.jinja"
printf '{%% macro x() %%}{%% endmacro %%}' >"$tmp/bad.jinja"
expect_rc 1 "--chat-template bad template" -- "$T" chat -m "$B158" --chat-template "$tmp/bad.jinja"
contains "$tmp/err" "macro" "a bad template names the construct"
# issue 16: --reasoning show|hide and --reasoning-budget 0 (Qwen3's own template, enable_thinking = false)
Q3=$F/qwen3-bonsai-q1_0.gguf
printf 'Hi\n' | "$T" chat -m "$Q3" -n 6 --temp 0 --ignore-eos --verbose >"$tmp/show" 2>"$tmp/err"
n_default=$(sed -n 's/.*\[turn: \([0-9]*\) new prompt tokens.*/\1/p' "$tmp/err")
printf 'Hi\n' | "$T" chat -m "$Q3" -n 6 --temp 0 --ignore-eos --verbose --reasoning-budget 0 >/dev/null 2>"$tmp/err"
n_off=$(sed -n 's/.*\[turn: \([0-9]*\) new prompt tokens.*/\1/p' "$tmp/err")
[ -n "$n_default" ] && [ "$n_off" = $((n_default + 4)) ] && ok ||
  bad "--reasoning-budget 0 adds <think>, \\n\\n, </think>, \\n\\n to the prompt: $n_default then $n_off tokens"
printf 'Hi\n' | "$T" chat -m "$Q3" -n 6 --temp 0 --ignore-eos --reasoning hide >"$tmp/hide" 2>/dev/null
[ -s "$tmp/show" ] && cmp -s "$tmp/show" "$tmp/hide" && ok || bad "--reasoning hide passes a reply without <think> through unchanged"
expect_rc 2 "--reasoning takes show or hide" -- "$T" chat -m "$Q3" --reasoning sometimes
contains "$tmp/err" "--reasoning must be show or hide" "--reasoning message"
expect_rc 2 "--reasoning-budget takes -1 or 0" -- "$T" chat -m "$Q3" --reasoning-budget 100
contains "$tmp/err" "supports -1 (unrestricted) and 0" "--reasoning-budget message"
# --i2s-layout: 64 reads the codes in bitnet.cpp's NEON layout (tests/test_i2s_layout.c proves the logits), other values refused
expect_rc 2 "--i2s-layout 32" -- "$T" run -m "$F/b158-llama3-i2s.gguf" -p hi -n 2 --i2s-layout 32
contains "$tmp/err" "i2s_layout must be 0, 64 or 128" "--i2s-layout message"
a=$("$T" run -m "$F/b158-llama3-i2s.gguf" -p hi -n 8 --temp 0 --ignore-eos 2>/dev/null)
b=$("$T" run -m "$F/b158-llama3-i2s.gguf" -p hi -n 8 --temp 0 --ignore-eos --i2s-layout 64 2>/dev/null)
[ -n "$a" ] && [ -n "$b" ] && [ "$a" != "$b" ] && ok || bad "--i2s-layout 64 reads the official fixture differently"
# a --stop string ends the reply, and the conversation records the reply as shown (without the stop string)
word=$(printf 'Tell me a story\n' | "$T" chat -n 30 --temp 0 2>/dev/null | tr -s ' \n' '\n\n' | grep . | sed -n 6p)
printf 'Tell me a story\n' | "$T" chat -n 30 --temp 0 --verbose -r "$word" >"$tmp/out" 2>"$tmp/err"
not_contains "$tmp/out" "$word" "chat --stop '$word' ends the reply before it"
recorded=$(sed -n 's/.*reply \([0-9]*\) bytes\].*/\1/p' "$tmp/err")
[ -n "$word" ] && [ "$recorded" = $(($(wc -c <"$tmp/out") - 1)) ] && ok || bad "chat records the reply as shown: $recorded bytes recorded, $(wc -c <"$tmp/out") shown"
# the context shift: a small context drops the oldest turns and keeps talking; a cut reply says so
printf 'Tell me a story about a cat and a dog\nAnd then what happened to the dog?\nWhat about the cat?\n' |
  "$T" chat -c 64 -n 16 --temp 0 --system "You tell stories." --verbose >/dev/null 2>"$tmp/err"
[ $? = 0 ] && ok || bad "context shift: exit code"
contains "$tmp/err" "(context full: dropped the oldest 1 turn" "context shift notice"
[ "$(grep -c '\[turn:' "$tmp/err")" = 3 ] && ok || bad "context shift: three turns expected: $(cat "$tmp/err")"
printf 'Tell me a story\nmore\n' | "$T" chat -c 64 -n -1 --ignore-eos --temp 0 >/dev/null 2>"$tmp/err"
contains "$tmp/err" "(reply cut: the context of 64 tokens is full" "a reply cut by the context gets a notice"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
