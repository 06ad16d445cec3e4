#!/usr/bin/env bash
# Refresh-grant benchmark: a release broker on 127.0.0.1, seeded with refresh
# grants, loaded with wrk (each request redeems a different refresh token).
# For each backend × algorithm: maximum throughput (wrk, 2 threads, 32
# connections, $DURATION s) and latency at a paced ~1,000 requests/s; plus the
# broker's resident memory idle and under load.
#
#   bench/refresh.sh                     # sqlite+postgres × ES256+RS256
#   BACKENDS=sqlite ALGS=ES256 bench/refresh.sh
#
# Needs: wrk (apt-get install wrk), Postgres at $PG_ADMIN_URL for the postgres runs.
set -euo pipefail
cd "$(dirname "$0")/.."
BACKENDS="${BACKENDS:-sqlite postgres}"
ALGS="${ALGS:-ES256 RS256}"
DURATION="${DURATION:-10}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"
PORT="${PORT:-18443}"
OUT="${OUT:-bench/out}"
mkdir -p "$OUT"

command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release -q -p idbridge --bin idbridge --example bench_seed
BIN="${CARGO_TARGET_DIR:-target}"/release/idbridge
SEED="${CARGO_TARGET_DIR:-target}"/release/examples/bench_seed
SECRET="bench-secret-0123456789abcdef"
BASIC=$(printf 'bench:%s' "$SECRET" | base64 -w0)

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

for backend in $BACKENDS; do
  for alg in $ALGS; do
    work=$(mktemp -d)
    if [ "$backend" = sqlite ]; then
      db_url="sqlite://$work/bench.db"
    else
      db_name="idb_bench_$$_$RANDOM"
      psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $db_name" >/dev/null
      db_url="${PG_ADMIN_URL%/*}/$db_name"
    fi
    # Enough fresh tokens for the max run (generous) and the paced run.
    if [ "$alg" = ES256 ]; then max_tokens=$((DURATION * 12000)); else max_tokens=$((DURATION * 5000)); fi
    paced_tokens=$((DURATION * 1100 + 2000))
    "$SEED" "$db_url" $((max_tokens + paced_tokens)) "$work/all.txt" 2>/dev/null
    head -n "$max_tokens" "$work/all.txt" > "$work/max.txt"
    tail -n "$paced_tokens" "$work/all.txt" > "$work/paced.txt"
    cat > "$work/idbridge.toml" <<TOML
issuer = "http://127.0.0.1:$PORT"
[server]
bind = "127.0.0.1:$PORT"
[storage]
url = "$db_url"
[signing]
master_key = "$("$BIN" keys generate-master)"
default_algorithm = "$alg"
[[clients]]
id = "bench"
secret = "$SECRET"
redirect_uris = ["https://bench.example/cb"]
TOML
    IDBRIDGE_LOG=warn "$BIN" serve --config "$work/idbridge.toml" 2>"$work/broker.log" &
    pid=$!
    for _ in $(seq 1 100); do
      curl -sf "http://127.0.0.1:$PORT/.well-known/openid-configuration" >/dev/null && break
      sleep 0.1
    done
    sleep 1
    idle=$(rss_kb $pid)
    max=$(TOKENS="$work/max.txt" THREADS=2 BASIC="$BASIC" wrk -t2 -c32 -d"${DURATION}s" -s bench/refresh.lua "http://127.0.0.1:$PORT" | grep '^RESULT')
    # ~1,000 requests/s: 12 connections, each pacing 10 ms between requests.
    paced=$(TOKENS="$work/paced.txt" THREADS=2 BASIC="$BASIC" PACE_MS=10 wrk -t2 -c12 -d"${DURATION}s" -s bench/refresh.lua "http://127.0.0.1:$PORT" | grep '^RESULT')
    loaded=$(hwm_kb $pid)
    kill $pid; wait $pid 2>/dev/null || true
    line="backend=$backend alg=$alg idle_rss_kb=$idle peak_rss_kb=$loaded | max: ${max#RESULT } | paced: ${paced#RESULT }"
    echo "$line" | tee -a "$OUT/refresh.txt"
    if [ "$backend" = postgres ]; then psql -q "$PG_ADMIN_URL" -c "DROP DATABASE $db_name WITH (FORCE)" >/dev/null; fi
    rm -rf "$work"
  done
done
