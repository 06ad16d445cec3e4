#!/usr/bin/env bash
# WeChat login benchmarks (release build, everything on 127.0.0.1):
#  1. Isolation: with the WeChat simulator answering code exchanges after 2 s and
#     500 logins in flight at once, is the token endpoint slower for another app?
#     wrk measures refresh grants of the `bench` client at ~1,000 requests/s
#     without, then with, the 500 slow logins of the `app` client.
#  2. Throughput: complete logins (authorize → simulator QR page → confirm →
#     callback with code exchange and userinfo → code redeemed at /token) against
#     `idbridge serve --dev`: RS256 (the default), ES256, and RS256 ID tokens with
#     ES256 access tokens.
# Needs wrk (installed if missing). PARTS="isolation throughput" (the default)
# picks the parts to run.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${DURATION:-10}"
PORT="${PORT:-18643}"
SIM_PORT=$((PORT + 10))
OUT="${OUT:-bench/out}"
PARTS="${PARTS:-isolation throughput}"
mkdir -p "$OUT"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p idbridge --bin idbridge --example bench_seed --example bench_logins
cargo build --release -q -p wechat-sim --example devsim
T="${CARGO_TARGET_DIR:-target}/release"
SECRET="bench-secret-0123456789abcdef"
APP_SECRET="app-secret-0123456789abcdef"
BASIC=$(printf 'bench:%s' "$SECRET" | base64 -w0)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
wait_http() { for _ in $(seq 1 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
paced() { # tokens file → RESULT line, ~1,000 refresh grants/s for $DURATION s
  TOKENS="$1" THREADS=2 BASIC="$BASIC" PACE_MS=10 wrk -t2 -c12 -d"${DURATION}s" -s bench/refresh.lua "http://127.0.0.1:$PORT" | grep '^RESULT'
}

# ---- 1. isolation
if [[ " $PARTS " == *" isolation "* ]]; then
"$T/examples/devsim" "127.0.0.1:$SIM_PORT" 127.0.0.1 >/dev/null 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$SIM_PORT/__sim/counters"
n=$((DURATION * 1100 + 2000))
"$T/examples/bench_seed" "sqlite://$work/b.db" $((2 * n)) "$work/all.txt" 2>/dev/null
head -n "$n" "$work/all.txt" > "$work/a.txt"
tail -n "$n" "$work/all.txt" > "$work/b.txt"
cat > "$work/idbridge.toml" <<TOML
issuer = "http://127.0.0.1:$PORT"
[server]
bind = "127.0.0.1:$PORT"
[storage]
url = "sqlite://$work/b.db"
[signing]
master_key = "$("$T/idbridge" keys generate-master)"
default_algorithm = "ES256"
[[clients]]
id = "bench"
secret = "$SECRET"
redirect_uris = ["http://127.0.0.1/bench/cb"]
[[clients]]
id = "app"
secret = "$APP_SECRET"
redirect_uris = ["http://127.0.0.1/app/cb"]
[[connectors]]
id = "wechat"
type = "wechat-web"
appid = "wx5d1e7c0a9b3f2401"
appsecret = "8b1f3c5e7a9d0b2c4e6f8a1b3c5d7e9f"
open_platform_id = "gh_dev_platform"
api_base_url = "http://127.0.0.1:$SIM_PORT"
open_base_url = "http://127.0.0.1:$SIM_PORT"
timeout_secs = 5
TOML
IDBRIDGE_LOG=warn "$T/idbridge" serve --config "$work/idbridge.toml" 2>"$work/broker.log" &
broker=$!
pids+=($broker)
wait_http "http://127.0.0.1:$PORT/healthz"
quiet=$(paced "$work/a.txt")
curl -sf -X POST -H 'content-type: application/json' \
  -d '{"endpoint":"access_token","kind":"slow","ms":2000}' "http://127.0.0.1:$SIM_PORT/__sim/faults" >/dev/null
"$T/examples/bench_logins" "http://127.0.0.1:$PORT" app "$APP_SECRET" http://127.0.0.1/app/cb wechat 500 $((DURATION + 6)) > "$work/logins.txt" &
driver=$!
sleep 3
busy=$(paced "$work/b.txt")
wait $driver
curl -sf -X DELETE "http://127.0.0.1:$SIM_PORT/__sim/faults" >/dev/null
kill $broker; wait $broker 2>/dev/null || true
{
  echo "isolation | token endpoint, quiet:                      ${quiet#RESULT }"
  echo "isolation | token endpoint, 500 slow logins in flight: ${busy#RESULT }"
  echo "isolation | the slow logins themselves:                $(grep '^LOGINS' "$work/logins.txt" | sed 's/^LOGINS //')"
} | tee -a "$OUT/wechat.txt"
fi

# ---- 2. throughput in dev mode
# RS256 for everything (the default); ES256 for everything; RS256 ID tokens with
# ES256 access tokens (signing.access_token_algorithm).
[[ " $PARTS " == *" throughput "* ]] || exit 0
for alg in RS256 ES256 RS256+ES256-access; do
  dev="$work/dev-$alg"
  id_alg=${alg%%+*}
  access_alg=$id_alg
  [ "$alg" = "RS256+ES256-access" ] && access_alg=ES256
  IDBRIDGE_LOG=warn IDBRIDGE__SIGNING__DEFAULT_ALGORITHM=$id_alg IDBRIDGE__SIGNING__ACCESS_TOKEN_ALGORITHM=$access_alg \
    "$T/idbridge" serve --dev --port "$PORT" --dir "$dev" >/dev/null 2>"$work/dev.log" &
  p=$!
  wait_http "http://127.0.0.1:$PORT/healthz"
  result=$("$T/examples/bench_logins" "http://127.0.0.1:$PORT" demo "$(cat "$dev/demo-client.secret")" \
    "http://127.0.0.1:$PORT/demo/callback" wechat 32 "$DURATION" | grep '^LOGINS')
  kill $p; wait $p 2>/dev/null || true
  echo "dev-mode logins alg=$alg: ${result#LOGINS }" | tee -a "$OUT/wechat.txt"
done
