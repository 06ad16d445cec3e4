#!/usr/bin/env bash
# Side by side, in one run on this machine: the broker against the reference
# OpenID provider (node oidc-provider 9.13.3, OpenID Certified, in-memory store,
# refresh-token rotation, an ID token on every refresh, opaque access tokens),
# both driven by the same load driver (bench_chains: CHAINS refresh-token chains,
# each refreshing with its newest token, client_secret_basic). Then complete
# dev-mode WeChat logins. Everything on 127.0.0.1, bounded in time.
#
#   bench/compare.sh                               # everything below
#   PARTS=refresh ALGS=RS256 BACKENDS=sqlite bench/compare.sh
#   BEFORE_BIN=/path/to/older/idbridge bench/compare.sh   # that build too, same run
#   REFERENCE=0 ...                                # skip the reference provider
#   LEVERS="" ...                                  # skip the RS256 lever runs
#   PG_PARAMS=sslmode=disable ...                  # libpq parameters for the broker
#   LOGIN_BACKENDS="sqlite postgres" ...           # dev-mode logins on Postgres too
#
# Parts: "refresh" (max throughput of each side; the broker also paced at
# PACED_RATE/s, and its resident memory idle and loaded), "logins" (dev-mode
# WeChat logins, 32 browsers). BEFORE_BIN adds a broker built from another
# commit to both parts, so a change is measured before and after on one machine.
# Prints RESULT lines and the ratios; raw lines go to $OUT/compare.txt.
#
# Needs: node and npm (the reference provider is installed with `npm ci`),
# Postgres at $PG_ADMIN_URL for BACKENDS=postgres.
set -euo pipefail
cd "$(dirname "$0")/.."
PARTS="${PARTS:-refresh logins}"
ALGS="${ALGS:-RS256 ES256}"
BACKENDS="${BACKENDS:-sqlite postgres}"
DURATION="${DURATION:-10}"
CHAINS="${CHAINS:-64}"
PACED_RATE="${PACED_RATE:-1000}"
PG_ADMIN_URL="${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/test}"
PG_PARAMS="${PG_PARAMS:-}"   # appended to the broker's Postgres URL, e.g. sslmode=disable
PORT="${PORT:-18443}"
REF_PORT=$((PORT + 1))
OUT="${OUT:-bench/out}"
BEFORE_BIN="${BEFORE_BIN:-}"
REFERENCE="${REFERENCE:-1}"   # 0: the broker only (before/after runs)
mkdir -p "$OUT"

cargo build --release -q -p idbridge --bin idbridge --example bench_seed --example bench_chains --example bench_logins
T="${CARGO_TARGET_DIR:-target}/release"
BIN="$T/idbridge"
SECRET="bench-secret-0123456789abcdef"
(cd bench/reference && npm ci --no-audit --no-fund --loglevel=error >/dev/null)

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
hwm_kb() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }
wait_http() { for _ in $(seq 1 200); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "no answer from $1" >&2; return 1; }
# CPU ticks of every Postgres server process (on Postgres runs: its share per grant).
pg_ticks() { local t=0 f; for f in /proc/[0-9]*/stat; do read -r -a a <"$f" 2>/dev/null || continue; [ "${a[1]}" = "(postgres)" ] && t=$((t + a[13] + a[14])); done; echo $t; }
# A fresh database on the Postgres server (prints its name), the broker's URL for it, and its removal.
pg_create() { local name="idb_cmp_$$_$RANDOM"; psql -q "$PG_ADMIN_URL" -c "CREATE DATABASE $name" >/dev/null; echo "$name"; }
pg_url() { echo "${PG_ADMIN_URL%/*}/$1${PG_PARAMS:+?$PG_PARAMS}"; }
pg_drop() { psql -q "$PG_ADMIN_URL" -c "DROP DATABASE $1 WITH (FORCE)" >/dev/null; }
# Microseconds of CPU per unit of work: TICKS (clock ticks) over N units.
us_per() { awk -v t="$1" -v n="${2:-0}" -v hz="$(getconf CLK_TCK)" 'BEGIN { if (n > 0) printf "%.0f", t / hz * 1e6 / n; else print "n/a" }'; }
rps() { sed -n 's/.* rps=\([0-9]*\).*/\1/p' <<<"$1"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
say() { echo "$*" | tee -a "$OUT/compare.txt"; }

say "# compare.sh $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
say "# cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, avx512ifma: $(grep -qw avx512ifma /proc/cpuinfo && echo yes || echo no)"
say "# $(openssl speed -seconds 1 rsa2048 2>/dev/null | grep '^rsa 2048' | awk '{print "openssl rsa2048: " $4 " per sign, " $6 " signs/s"}')"
say "# $(openssl speed -seconds 1 ecdsap256 2>/dev/null | grep 'nistp256' | awk '{print "openssl ecdsa p256: " $5 " per sign, " $7 " signs/s"}')"

# The reference provider: started per run with fresh chains; prints the RESULT.
reference() { # alg
  local toks="$work/ref-$1.txt"
  PORT=$REF_PORT ALG=$1 CHAINS=$CHAINS SECRET=$SECRET TOKENS_OUT="$toks" \
    node bench/reference/server.mjs >"$work/ref.out" 2>"$work/ref.log" &
  local p=$!
  pids+=($p)
  for _ in $(seq 1 200); do grep -q ready "$work/ref.out" && break; sleep 0.1; done
  sleep 1
  local idle; idle=$(rss_kb $p)
  local r; r=$("$T/examples/bench_chains" "http://127.0.0.1:$REF_PORT/token" bench "$SECRET" "$toks" "$DURATION" | tr '\n' ' ')
  local peak; peak=$(hwm_kb $p)
  kill $p; wait $p 2>/dev/null || true
  echo "${r#RESULT } idle_rss_kb=$idle peak_rss_kb=$peak"
}

# One broker (binary $1) on a fresh database: max run, then paced run. VARIANT
# (env): "" the defaults; "no-id-token-on-refresh" the client's
# id_token_on_refresh = false; "es256-access" ES256 access tokens beside $alg
# ID tokens.
broker() { # bin backend alg
  local bin=$1 backend=$2 alg=$3 db_url db_name=""
  local client_extra="" signing_extra=""
  case "${VARIANT:-}" in
    no-id-token-on-refresh) client_extra='id_token_on_refresh = false' ;;
    es256-access) signing_extra='access_token_algorithm = "ES256"' ;;
  esac
  local dir; dir=$(mktemp -d -p "$work")
  if [ "$backend" = sqlite ]; then
    db_url="sqlite://$dir/bench.db"
  else
    db_name=$(pg_create)
    db_url=$(pg_url "$db_name")
  fi
  "$T/examples/bench_seed" "$db_url" $((2 * CHAINS)) "$dir/all.txt" 2>/dev/null
  head -n "$CHAINS" "$dir/all.txt" >"$dir/max.txt"
  tail -n "$CHAINS" "$dir/all.txt" >"$dir/paced.txt"
  cat >"$dir/idbridge.toml" <<TOML
issuer = "http://127.0.0.1:$PORT"
[server]
bind = "127.0.0.1:$PORT"
[storage]
url = "$db_url"
[signing]
master_key = "$("$bin" keys generate-master)"
default_algorithm = "$alg"
$signing_extra
[[clients]]
id = "bench"
secret = "$SECRET"
redirect_uris = ["https://bench.example/cb"]
$client_extra
TOML
  IDBRIDGE_LOG=warn "$bin" serve --config "$dir/idbridge.toml" 2>"$dir/broker.log" &
  local p=$!
  pids+=($p)
  wait_http "http://127.0.0.1:$PORT/healthz"
  sleep 1
  local idle; idle=$(rss_kb $p)
  local cpu0; cpu0=$(awk '{print $14 + $15}' "/proc/$p/stat")
  local pg0; pg0=$(pg_ticks)
  local idt=1; [ "${VARIANT:-}" = no-id-token-on-refresh ] && idt=0
  local max; max=$(BENCH_ID_TOKEN=$idt "$T/examples/bench_chains" "http://127.0.0.1:$PORT/token" bench "$SECRET" "$dir/max.txt" "$DURATION" | tr '\n' ' ')
  local cpu1; cpu1=$(awk '{print $14 + $15}' "/proc/$p/stat")
  local pg1; pg1=$(pg_ticks)
  local paced; paced=$(BENCH_ID_TOKEN=$idt "$T/examples/bench_chains" "http://127.0.0.1:$PORT/token" bench "$SECRET" "$dir/paced.txt" "$DURATION" "$PACED_RATE" | tr '\n' ' ')
  local peak; peak=$(hwm_kb $p)
  kill $p; wait $p 2>/dev/null || true
  local n; n=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$max")
  local us; us=$(us_per $((cpu1 - cpu0)) "$n")
  local pg=""
  if [ -n "$db_name" ]; then
    pg=" postgres_cpu_us_per_grant=$(us_per $((pg1 - pg0)) "$n")"
    pg_drop "$db_name"
  fi
  echo "max: ${max#RESULT } broker_cpu_us_per_grant=$us$pg | paced: ${paced#RESULT } | idle_rss_kb=$idle peak_rss_kb=$peak"
}

if [[ " $PARTS " == *" refresh "* ]]; then
  for alg in $ALGS; do
    ref="rps=0"
    if [ "$REFERENCE" = 1 ]; then
      ref=$(reference "$alg")
      say "refresh alg=$alg reference(oidc-provider, memory): $ref"
    fi
    for backend in $BACKENDS; do
      now=$(broker "$BIN" "$backend" "$alg")
      say "refresh alg=$alg idbridge($backend): $now"
      [ "$REFERENCE" = 1 ] && say "refresh alg=$alg backend=$backend ratio idbridge/reference: $(ratio "$(rps "${now%%|*}")" "$(rps "$ref")")"
      # The levers for RS256 (docs/benchmarks.md): one RSA signature a grant.
      if [ "$alg" = RS256 ] && [ "$backend" = sqlite ]; then
        for variant in ${LEVERS-no-id-token-on-refresh es256-access}; do
          lever=$(VARIANT=$variant broker "$BIN" "$backend" "$alg")
          say "refresh alg=$alg idbridge($backend, $variant): $lever"
          [ "$REFERENCE" = 1 ] && say "refresh alg=$alg backend=$backend $variant ratio idbridge/reference: $(ratio "$(rps "${lever%%|*}")" "$(rps "$ref")")"
        done
      fi
      if [ -n "$BEFORE_BIN" ]; then
        before=$(broker "$BEFORE_BIN" "$backend" "$alg")
        say "refresh alg=$alg idbridge-before($backend): $before"
        say "refresh alg=$alg backend=$backend ratio now/before: $(ratio "$(rps "${now%%|*}")" "$(rps "${before%%|*}")")"
      fi
    done
  done
fi

# Complete dev-mode WeChat logins (authorize → simulator → callback → token).
logins() { # bin [backend]
  local dir; dir=$(mktemp -d -p "$work")
  local db_name="" storage=()
  if [ "${2:-sqlite}" = postgres ]; then
    db_name=$(pg_create)
    storage=(env "IDBRIDGE__STORAGE__URL=$(pg_url "$db_name")")
  fi
  IDBRIDGE_LOG=warn "${storage[@]}" "$1" serve --dev --port "$PORT" --dir "$dir" >/dev/null 2>"$dir/dev.log" &
  local p=$!
  pids+=($p)
  wait_http "http://127.0.0.1:$PORT/healthz"
  local cpu0; cpu0=$(awk '{print $14 + $15}' "/proc/$p/stat")
  # `times` after the driver: the CPU the driver (a child of this subshell) used.
  local r; r=$( ( "$T/examples/bench_logins" "http://127.0.0.1:$PORT" demo "$(cat "$dir/demo-client.secret")" \
    "http://127.0.0.1:$PORT/demo/callback" wechat 32 "$DURATION"; times ) | tr '\n' ' ')
  local cpu1; cpu1=$(awk '{print $14 + $15}' "/proc/$p/stat")
  kill $p; wait $p 2>/dev/null || true
  [ -n "$db_name" ] && pg_drop "$db_name"
  local n; n=$(sed -n 's/.*LOGINS ok=\([0-9]*\).*/\1/p' <<<"$r")
  local us; us=$(us_per $((cpu1 - cpu0)) "$n")
  # The children's line of `times`: "XmY.YYYs XmY.YYYs".
  local drv; drv=$(awk -v n="${n:-0}" '{ for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+m[0-9.]+s$/) { split($i, a, "m"); t[++k] = a[1] * 60 + a[2] } }
    END { if (n > 0 && k >= 4) printf "%.0f", (t[3] + t[4]) * 1e6 / n; else print "n/a" }' <<<"$r")
  echo "$(sed 's/ [0-9]*m[0-9.]*s.*//; s/^LOGINS //' <<<"$r") broker_cpu_us_per_login=$us driver_cpu_us_per_login=$drv"
}
lps() { sed -n 's/.*logins_per_s=\([0-9]*\).*/\1/p' <<<"$1"; }

if [[ " $PARTS " == *" logins "* ]]; then
  for backend in ${LOGIN_BACKENDS:-sqlite}; do
    now=$(logins "$BIN" "$backend")
    say "logins($backend) idbridge: $now"
    if [ -n "$BEFORE_BIN" ]; then
      before=$(logins "$BEFORE_BIN" "$backend")
      say "logins($backend) idbridge-before: $before"
      say "logins($backend) ratio now/before: $(ratio "$(lps "$now")" "$(lps "$before")")"
    fi
  done
fi
