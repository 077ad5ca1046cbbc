#!/usr/bin/env bash
# ternlm pull and -m hf://... against a local server (examples/serve.mjs): progress, resume after a cut (in one run
# and across runs), sha256 from X-Linked-ETag and from --sha256, a wrong checksum keeping the partial file, 404, a
# body that is not GGUF, cache reuse without a request.
# usage: pull_test.sh PATH/TO/ternlm REPO_ROOT
set -u
T=$1
R=$2
pass=0
fail=0
tmp=$(mktemp -d)
server=
cleanup() { [ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*" >&2; }
contains() { if grep -qF -- "$2" "$1"; then ok; else bad "$3: '$2' not in $(head -c 600 "$1")"; fi; }

if ! "$T" --version | grep -q "downloads: libcurl"; then
  echo "ternlm was built without libcurl: skipping the download tests"
  "$T" pull http://127.0.0.1:9/x.gguf >/dev/null 2>"$tmp/err"
  [ $? = 1 ] && grep -q "built without libcurl" "$tmp/err" && exit 77
  echo "FAIL: a build without libcurl must say so" >&2
  exit 1
fi
command -v node >/dev/null || { echo "node is missing: skipping"; exit 77; }

# what the server holds: a GGUF (also under a Hugging Face layout), a text file, no nope.gguf
mkdir -p "$tmp/www/hf/owner/repo/resolve/main"
MODEL=$R/models/ternlm-tinystories.gguf
cp "$MODEL" "$tmp/www/m.gguf"
cp "$MODEL" "$tmp/www/m2.gguf"
cp "$MODEL" "$tmp/www/hf/owner/repo/resolve/main/model.gguf"
printf '<!DOCTYPE html><p>an error page, not a model</p>\n' >"$tmp/www/notes.html"
SHA=$(sha256sum "$MODEL" | cut -d' ' -f1)
SIZE=$(stat -c %s "$MODEL")

node "$R/examples/serve.mjs" --port 0 --root "$tmp/www" --log "$tmp/log" --cut-once /m.gguf@3000000 --linked-etag \
  >"$tmp/server.out" 2>&1 &
server=$!
for _ in $(seq 100); do grep -q 'http://' "$tmp/server.out" && break; sleep 0.1; done
PORT=$(sed -n 's|.*http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$tmp/server.out")
[ -n "$PORT" ] || { echo "FAIL: the server did not start: $(cat "$tmp/server.out")" >&2; exit 1; }
BASE=http://127.0.0.1:$PORT
export XDG_CACHE_HOME=$tmp/cache

# 1. a cut in the middle: resumed with a Range request in the same run; progress on stderr; sha256 from the header
"$T" pull "$BASE/m.gguf" >"$tmp/out" 2>"$tmp/err"
[ $? = 0 ] && ok || bad "pull with a cut: $(cat "$tmp/err")"
path=$(cat "$tmp/out")
cmp -s "$path" "$MODEL" && ok || bad "the pulled file differs from the served one ($path)"
case "$path" in "$tmp/cache/ternlm/url/"*-m.gguf) ok ;; *) bad "cache path: $path" ;; esac
# the server cuts after sending 3000000 bytes; what arrived before the cut (up to that) is kept and resumed from
at=$(sed -n 's/.*cut at byte \([0-9]*\).*/\1/p' "$tmp/err" | head -1)
[ -n "$at" ] && [ "$at" -gt 0 ] && [ "$at" -le 3000000 ] && ok || bad "the cut is reported: $(cat "$tmp/err")"
contains "$tmp/err" "resuming at byte $at" "the download resumes where it was cut"
grep -q "^GET /m.gguf bytes=$at- 206" "$tmp/log" && ok || bad "no Range request after the cut: $(cat "$tmp/log")"
contains "$tmp/err" "MB/s" "progress shows the rate"
contains "$tmp/err" "ETA" "progress shows the ETA"
contains "$tmp/err" "100.0%" "progress reaches 100%"
contains "$tmp/err" "X-Linked-ETag" "the sha256 comes from X-Linked-ETag"
contains "$tmp/err" "sha256 ok ($SHA)" "the download is verified"
[ ! -e "$path.part" ] && ok || bad "the .part file must be gone after success"

# 2. a second pull is served from the cache without a request
n=$(wc -l <"$tmp/log")
"$T" pull "$BASE/m.gguf" >"$tmp/out" 2>"$tmp/err"
[ $? = 0 ] && [ "$(cat "$tmp/out")" = "$path" ] && ok || bad "second pull: $(cat "$tmp/err")"
contains "$tmp/err" "using the cached" "cache reuse is reported"
[ "$(wc -l <"$tmp/log")" = "$n" ] && ok || bad "a cached pull must not make a request"

# 3. hf://OWNER/REPO/FILE (HF_ENDPOINT points at the local server), resuming a partial file left by an earlier run
mkdir -p "$tmp/cache/ternlm/hf/owner/repo"
head -c 1000000 "$MODEL" >"$tmp/cache/ternlm/hf/owner/repo/model.gguf.part"
HF_ENDPOINT=$BASE/hf "$T" pull hf://owner/repo/model.gguf --sha256 "$SHA" >"$tmp/out" 2>"$tmp/err"
[ $? = 0 ] && ok || bad "pull hf://: $(cat "$tmp/err")"
[ "$(cat "$tmp/out")" = "$tmp/cache/ternlm/hf/owner/repo/model.gguf" ] && ok || bad "hf cache path: $(cat "$tmp/out")"
contains "$tmp/err" "resuming at byte 1000000" "a partial file from an earlier run is resumed"
grep -q "^GET /hf/owner/repo/resolve/main/model.gguf bytes=1000000- 206" "$tmp/log" && ok || bad "hf Range request: $(tail -3 "$tmp/log")"
cmp -s "$tmp/cache/ternlm/hf/owner/repo/model.gguf" "$MODEL" && ok || bad "the resumed file differs"
# -m hf://... uses the cached file
HF_ENDPOINT=$BASE/hf "$T" run -m hf://owner/repo/model.gguf -p "Once upon a time" -n 4 --temp 0 >"$tmp/out" 2>"$tmp/err"
[ $? = 0 ] && ok || bad "run -m hf://: $(cat "$tmp/err")"
contains "$tmp/out" "Once upon a time" "run -m hf:// generates"

# 4. a wrong checksum is rejected and the downloaded bytes are kept for a resume; the right one then succeeds
"$T" pull "$BASE/m2.gguf" --sha256 "$(printf '0%.0s' $(seq 64))" >"$tmp/out" 2>"$tmp/err"
[ $? = 1 ] && ok || bad "a wrong checksum must exit 1"
contains "$tmp/err" "sha256 mismatch" "the wrong checksum is named"
contains "$tmp/err" "the download is kept in" "the partial file is kept"
part=$(ls "$tmp"/cache/ternlm/url/*-m2.gguf.part 2>/dev/null)
[ -n "$part" ] && [ "$(stat -c %s "$part")" = "$SIZE" ] && ok || bad "the .part file must be kept whole: '$part'"
ls "$tmp"/cache/ternlm/url/*-m2.gguf >/dev/null 2>&1 && bad "a file with a wrong checksum must not be in the cache" || ok
"$T" pull "$BASE/m2.gguf" --sha256 "$SHA" >"$tmp/out" 2>"$tmp/err"
[ $? = 0 ] && ok || bad "the right checksum after a wrong one: $(cat "$tmp/err")"
grep -q "^GET /m2.gguf bytes=$SIZE- 416" "$tmp/log" && ok || bad "the kept file is resumed, not fetched again: $(tail -3 "$tmp/log")"

# 4b. a digest the server gave is remembered with a partial file: a later run cannot accept a corrupted one
rm -f "$tmp"/cache/ternlm/url/*-m2.gguf*
"$T" pull "$BASE/m2.gguf" --sha256 "$(printf '1%.0s' $(seq 64))" >/dev/null 2>&1 # keeps m2.gguf.part and the server's digest
part=$(ls "$tmp"/cache/ternlm/url/*-m2.gguf.part)
printf 'XXXX' | dd of="$part" bs=1 seek=100 conv=notrunc 2>/dev/null
"$T" pull "$BASE/m2.gguf" >"$tmp/out" 2>"$tmp/err"
[ $? = 1 ] && ok || bad "a corrupted partial file must fail against the remembered digest: $(cat "$tmp/err")"
contains "$tmp/err" "sha256 mismatch" "the remembered digest is checked"
rm -f "$part" "$part.sha256"
# 4c. one download of a file at a time
mkdir -p "$tmp/cache/ternlm/hf/owner/repo"
python3 -c '
import fcntl, subprocess, sys
f = open(sys.argv[2] + ".part", "a")
fcntl.lockf(f, fcntl.LOCK_EX)
r = subprocess.run([sys.argv[1], "pull", "hf://owner/repo/other.gguf"], capture_output=True, text=True)
print(r.returncode, r.stderr)' "$T" "$tmp/cache/ternlm/hf/owner/repo/other.gguf" >"$tmp/err" 2>&1
grep -q '^1 ' "$tmp/err" && grep -q "another ternlm is downloading" "$tmp/err" && ok || bad "a locked download: $(cat "$tmp/err")"

# 4d. Ctrl-C during a download (a server that never answers) stops it with exit 130
python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
c = s.accept(); time.sleep(30)' >"$tmp/silent.port" &
silent=$!
for _ in $(seq 50); do [ -s "$tmp/silent.port" ] && break; sleep 0.1; done
"$T" pull "http://127.0.0.1:$(cat "$tmp/silent.port")/slow.gguf" >/dev/null 2>"$tmp/err" &
pid=$!
sleep 1
kill -INT $pid
wait $pid
rc=$?
kill $silent 2>/dev/null
[ "$rc" = 130 ] && ok || bad "Ctrl-C during a download: exit $rc, want 130"
contains "$tmp/err" "interrupted" "an interrupted download says so"

# 5. 404, a body that is not GGUF, bad arguments
"$T" pull "$BASE/nope.gguf" >"$tmp/out" 2>"$tmp/err"
[ $? = 1 ] && ok || bad "404 must exit 1"
contains "$tmp/err" "HTTP 404 (not found" "404 is reported"
ls "$tmp"/cache/ternlm/url/*nope.gguf* >/dev/null 2>&1 && bad "a 404 must leave nothing in the cache" || ok
HF_ENDPOINT=$BASE/hf "$T" run -m hf://owner/repo/missing.gguf -p hi >"$tmp/out" 2>"$tmp/err"
[ $? = 1 ] && ok || bad "run -m with a missing hf file must exit 1"
contains "$tmp/err" "HTTP 404" "run -m hf:// 404"
"$T" pull "$BASE/notes.html" >"$tmp/out" 2>"$tmp/err"
[ $? = 1 ] && ok || bad "a non-GGUF body must exit 1"
contains "$tmp/err" 'is not a GGUF file (it starts with "<!DO", Content-Type text/html' "a non-GGUF body is reported"
ls "$tmp"/cache/ternlm/url/*notes.html* >/dev/null 2>&1 && bad "a non-GGUF body must leave nothing in the cache" || ok
"$T" pull "$BASE/m.gguf" --sha256 xyz >/dev/null 2>"$tmp/err"
[ $? = 2 ] && ok || bad "a malformed --sha256 is a usage error"
"$T" pull "hf://owner/../etc/passwd" >/dev/null 2>"$tmp/err"
[ $? = 2 ] && ok || bad "hf:// with .. is a usage error"
"$T" pull hf://owner >/dev/null 2>"$tmp/err"
[ $? = 2 ] && ok || bad "hf:// without REPO/FILE is a usage error"

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
