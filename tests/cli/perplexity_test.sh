#!/usr/bin/env bash
# ternlm perplexity (issue 16): PPL of the default model on the tinystories sample, a round trip through
# llama-perplexity's base-logits file (same model: KLD ~ 0, same top token everywhere), and the two Bonsai
# fixtures (one Qwen3 vocabulary) against each other (a real divergence). Usage: perplexity_test.sh TERNLM SHARED
set -euo pipefail
T=$1 SHARED=$2
TXT=$SHARED/corpora/tinystories-sample-cased.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }
num() { sed -n "s/^$1 *: *\([-0-9.]*\).*/\1/p" "$2"; }

# 1. the default model: PPL in a sane range, and the base file has llama-perplexity's exact size
"$T" perplexity -f "$TXT" -c 128 --chunks 6 -t 2 --kl-divergence-base "$tmp/base.kld" >"$tmp/ppl.txt" 2>"$tmp/err.txt" \
  || { cat "$tmp/err.txt"; fail "perplexity run"; }
ppl=$(sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p' "$tmp/ppl.txt")
awk -v p="$ppl" 'BEGIN { exit !(p > 1.5 && p < 20) }' || fail "default-model PPL $ppl outside 1.5..20"
nvocab=$(od -An -t d4 -j 12 -N 4 "$tmp/base.kld" | tr -d ' ')
nv=$(( 2 * ((nvocab + 1) / 2) + 4 ))
want=$(( 8 + 12 + 4 * 6 * 128 + 6 * (128 - 1 - 64) * nv * 2 ))
[ "$(head -c 8 "$tmp/base.kld")" = "_logits_" ] || fail "base file magic"
[ "$(stat -c %s "$tmp/base.kld")" = "$want" ] || fail "base file is $(stat -c %s "$tmp/base.kld") bytes, want $want"

# 2. the same model against its own base file
"$T" perplexity --kl-divergence-base "$tmp/base.kld" --kl-divergence -t 2 >"$tmp/kld.txt" 2>"$tmp/err.txt" \
  || { cat "$tmp/err.txt"; fail "kl-divergence run"; }
[ "$(num 'Mean PPL(Q)' "$tmp/kld.txt")" = "$(printf '%.6f' "$ppl")" ] || [ "$(printf '%.4f' "$(num 'Mean PPL(Q)' "$tmp/kld.txt")")" = "$ppl" ] \
  || fail "PPL(Q) $(num 'Mean PPL(Q)' "$tmp/kld.txt") differs from the first run's $ppl"
awk -v k="$(num 'Mean    KLD' "$tmp/kld.txt")" -v s="$(num 'Same top p' "$tmp/kld.txt")" \
  'BEGIN { exit !(k != "" && k < 1e-4 && k > -1e-4 && s == 100) }' || { cat "$tmp/kld.txt"; fail "self-KLD must be ~0 with the same top token"; }

# 2b. the int8 and int4 heads against the F16 head's base file: small, then larger, KL divergence (both > 0)
for h in i8 i4; do
  "$T" perplexity --kl-divergence-base "$tmp/base.kld" --kl-divergence -t 2 --head-quant $h >"$tmp/kld-$h.txt" 2>"$tmp/err.txt" \
    || { cat "$tmp/err.txt"; fail "kl-divergence --head-quant $h"; }
done
awk -v a="$(num 'Mean    KLD' "$tmp/kld-i8.txt")" -v b="$(num 'Mean    KLD' "$tmp/kld-i4.txt")" \
  'BEGIN { exit !(a != "" && b != "" && a > 0 && a < 0.001 && b > a && b < 0.02) }' \
  || { cat "$tmp/kld-i8.txt" "$tmp/kld-i4.txt"; fail "head KLD: int8 must be tiny, int4 larger but small"; }
"$T" perplexity --kl-divergence-base "$tmp/base.kld" --kl-divergence --head-quant i3 >/dev/null 2>"$tmp/err.txt" \
  && fail "--head-quant i3 accepted"

# 3. Bonsai Q1_0 as the base, Q2_0 compared with it (different weights, one vocabulary)
"$T" perplexity -m "$SHARED/fixtures/qwen3-bonsai-q1_0.gguf" -f "$TXT" -c 64 --chunks 2 -t 2 \
  --kl-divergence-base "$tmp/bonsai.kld" >/dev/null 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; fail "bonsai base"; }
"$T" perplexity -m "$SHARED/fixtures/qwen3-bonsai-q2_0.gguf" --kl-divergence-base "$tmp/bonsai.kld" --kl-divergence -t 2 \
  >"$tmp/bk.txt" 2>"$tmp/err.txt" || { cat "$tmp/err.txt"; fail "bonsai kl-divergence"; }
awk -v k="$(num 'Mean    KLD' "$tmp/bk.txt")" 'BEGIN { exit !(k != "" && k > 0.01) }' || { cat "$tmp/bk.txt"; fail "Q1_0 vs Q2_0 KLD should be large"; }

# 4. bad input: a base file for another vocabulary, and a file that is not one
"$T" perplexity -m "$SHARED/fixtures/qwen3-bonsai-q2_0.gguf" --kl-divergence-base "$tmp/base.kld" --kl-divergence \
  >/dev/null 2>"$tmp/err.txt" && fail "a base file of another vocabulary must be refused"
grep -q "vocabulary of" "$tmp/err.txt" || fail "vocabulary mismatch message: $(cat "$tmp/err.txt")"
printf 'not a logits file' >"$tmp/bogus"
"$T" perplexity --kl-divergence-base "$tmp/bogus" --kl-divergence >/dev/null 2>"$tmp/err.txt" && fail "bogus base file accepted"
grep -q "_logits_" "$tmp/err.txt" || fail "bogus base file message: $(cat "$tmp/err.txt")"
echo "perplexity: PPL $ppl (default model, 6x128), self-KLD $(num 'Mean    KLD' "$tmp/kld.txt"), Q2_0 vs Q1_0 KLD $(num 'Mean    KLD' "$tmp/bk.txt"), head KLD i8 $(num 'Mean    KLD' "$tmp/kld-i8.txt") i4 $(num 'Mean    KLD' "$tmp/kld-i4.txt"): 5 passed, 0 failed"
