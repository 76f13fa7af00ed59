#!/usr/bin/env bash
# bench-coupon.sh — the coupon hot path, sagaflow next to the bare baseline.
#
#   loadtest/bench-coupon.sh          (or: make bench-coupon)
#   RATE=1000 DURATION=10s loadtest/bench-coupon.sh
#
# Runs the same loadtest/coupon.js twice, with the same RATE and DURATION:
#   1. against loadtest/bare (a gin server answering POST
#      /v1/campaigns/{id}/requests 202 and doing nothing else), which this
#      script builds into bin/bare when missing or older than its sources,
#      starts on BARE_ADDR and stops again (also on Ctrl-C or failure);
#   2. against sagaflow at BASE_URL, which must already be running
#      (`make run`; checked first with GET /readyz).
# Each run goes through loadtest/k6.sh (HTML report in .data/reports/) and
# exports k6's end-of-test summary to .data/reports/coupon-{bare,sagaflow}-
# <UTC timestamp>.json, from which it prints:
#   req/s     requests served per second while RATE was held: the count of
#             http_reqs{name:coupon_request,phase:hold} / DURATION (k6's own
#             "rate" divides by the whole run, setup, ramp and teardown
#             included). It stays at RATE while a server keeps up; an
#             arrival-rate test drops iterations (dropped column) when it
#             does not.
#   p50, p99  http_req_duration{name:coupon_request}, ms (ramp included)
#   ratio     sagaflow / bare, of req/s and of p50 and p99
# On a 2-core machine k6 itself takes most of a core at a few thousand
# requests/s, and sagaflow shares the rest with Redis, PostgreSQL and Temporal:
# the figures compare the two servers on this machine, nothing more.
#
# With RATES set (make bench-coupon-ceiling) it searches each server's
# ceiling instead: it runs coupon.js at each rate of RATES in turn, against
# the bare baseline and against sagaflow one after the other (so both meet
# the same moment of a noisy machine), and stops for a server at the first
# rate it does not hold — k6's thresholds fail (p99 >= 20 ms, or fewer
# than 99.9% of requests answered 202/409/410) or more than 1% of the
# iterations are dropped. It prints every run, each server's highest rate
# held with its p50/p99, and the ratio of the two rates (the issue's target:
# sagaflow's at least half the bare endpoint's, with p99 under 20 ms).
#
# Environment:
#   RATES     e.g. "500 1000 1500 2000 3000": search the ceilings (see above)
#   RATE      requests/s after coupon.js's 10 s ramp (default 1000)
#   DURATION  how long RATE is held (k6 duration, default 20s)
#   BASE_URL  sagaflow (default http://127.0.0.1:8080)
#   BARE_ADDR where the baseline listens (default 127.0.0.1:18080)
#   API_KEY, STOCK, USERS  passed on to coupon.js (see its header)
#
# Exit status: that of k6's run against sagaflow (0 ok, 99 thresholds failed,
# 108 aborted in setup, ...); 2 when something is missing (sagaflow not
# ready, BARE_ADDR taken, bin/bare does not start).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RATE=${RATE:-1000}
DURATION=${DURATION:-20s}
BASE_URL=${BASE_URL:-http://127.0.0.1:8080}
BASE_URL=${BASE_URL%/}
BARE_ADDR=${BARE_ADDR:-127.0.0.1:18080}
BARE_URL=http://$BARE_ADDR
BARE=$ROOT/bin/bare
REPORT_DIR=${K6_REPORT_DIR:-$ROOT/.data/reports}
export RATE DURATION

log() { printf 'bench-coupon: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 2
}

# seconds DURATION -> the k6 duration in seconds (1m30s -> 90), or fails.
seconds() {
  awk -v d="$1" 'BEGIN {
    t = 0
    while (match(d, /^[0-9]+(\.[0-9]+)?(ms|s|m|h)/)) {
      tok = substr(d, 1, RLENGTH); d = substr(d, RLENGTH + 1)
      n = tok + 0; u = tok; sub(/^[0-9.]+/, "", u)
      t += n * (u == "ms" ? 0.001 : u == "s" ? 1 : u == "m" ? 60 : 3600)
    }
    if (d != "" || t <= 0) exit 1
    printf "%g\n", t
  }'
}

[[ $RATE =~ ^[1-9][0-9]*$ ]] || die "RATE=$RATE: want a positive integer (requests/s)"
hold=$(seconds "$DURATION") || die "DURATION=$DURATION: want a k6 duration such as 20s or 1m30s"
command -v curl >/dev/null 2>&1 || die "curl not found"

# up URL: GET URL/readyz answers 200 within 3 s.
up() { curl -fsS -o /dev/null --max-time 3 "$1/readyz" 2>/dev/null; }

# sagaflow first: no point in benchmarking the baseline alone.
up "$BASE_URL" || die "sagaflow is not ready at $BASE_URL/readyz; start the stack and sagaflow first (make run), then retry"
up "$BARE_URL" && die "something already answers on $BARE_URL; stop it or set BARE_ADDR"

# bin/bare: built when missing or older than its sources or go.mod/go.sum.
if [ ! -x "$BARE" ] || [ -n "$(find loadtest/bare go.mod go.sum -newer "$BARE" -print -quit)" ]; then
  log "building $BARE"
  go build -o "$BARE" ./loadtest/bare
fi

mkdir -p "$REPORT_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
bare_json=$REPORT_DIR/coupon-bare-$stamp.json
saga_json=$REPORT_DIR/coupon-sagaflow-$stamp.json
bare_log=$REPORT_DIR/bare-$stamp.log

bare_pid=
stop_bare() {
  if [ -n "$bare_pid" ]; then
    kill "$bare_pid" 2>/dev/null || true
    wait "$bare_pid" 2>/dev/null || true
    bare_pid=
  fi
}
trap stop_bare EXIT
trap 'exit 130' INT TERM

log "starting $BARE on $BARE_ADDR (log: $bare_log)"
"$BARE" -addr "$BARE_ADDR" >"$bare_log" 2>&1 &
bare_pid=$!
for _ in $(seq 1 50); do
  up "$BARE_URL" && break
  kill -0 "$bare_pid" 2>/dev/null || die "bin/bare exited: $(tail -n 5 "$bare_log")"
  sleep 0.1
done
up "$BARE_URL" || die "bin/bare does not answer on $BARE_URL/readyz after 5 s"

# run LABEL URL JSON: coupon.js against URL, summary to JSON; k6's exit code.
run() {
  local rc=0
  log "== $1: RATE=$RATE DURATION=$DURATION against $2"
  BASE_URL=$2 loadtest/k6.sh loadtest/coupon.js \
    -e "RATE=$RATE" -e "DURATION=$DURATION" --summary-export "$3" || rc=$?
  return "$rc"
}

# figures JSON -> "count p50 p99 dropped" (n/a for what is missing).
figures() {
  if [ ! -s "$1" ]; then
    echo "n/a n/a n/a n/a"
  elif command -v jq >/dev/null 2>&1; then
    jq -r '.metrics as $m
      | def v(k; f): ($m[k][f] // "n/a") | tostring;
      [v("http_reqs{name:coupon_request,phase:hold}"; "count"),
       v("http_req_duration{name:coupon_request}"; "med"),
       v("http_req_duration{name:coupon_request}"; "p(99)"),
       (($m["dropped_iterations"]["count"] // 0) | tostring)] | join(" ")' "$1"
  else
    python3 - "$1" <<'EOF'
import json, sys
m = json.load(open(sys.argv[1]))["metrics"]
def v(k, f, d="n/a"):
    return str(m.get(k, {}).get(f, d))
print(v("http_reqs{name:coupon_request,phase:hold}", "count"),
      v("http_req_duration{name:coupon_request}", "med"),
      v("http_req_duration{name:coupon_request}", "p(99)"),
      v("dropped_iterations", "count", 0))
EOF
  fi
}

# try LABEL URL RATE: coupon.js against URL at RATE; prints one line and
# returns 0 when the rate was held.
try() {
  local label=$1 url=$2 r=$3 rc=0 json count p50 p99 drop held
  json=$REPORT_DIR/coupon-$label-$r-$stamp.json
  RATE=$r run "$label" "$url" "$json" || rc=$?
  read -r count p50 p99 drop <<<"$(figures "$json")"
  held=$(awk -v rc="$rc" -v d="$drop" -v r="$r" -v h="$hold" 'BEGIN { print (rc == 0 && d + 0 <= 0.01 * r * h) ? "held" : "not held" }')
  printf '%-10s rate %5s/s: served %8s/s  p50 %8s ms  p99 %8s ms  dropped %6s  k6 rc %3s  -> %s\n' \
    "$label" "$r" "$(awk -v c="$count" -v h="$hold" 'BEGIN { printf (c ~ /^[0-9.]+$/) ? "%.0f" : "n/a", c / h }')" \
    "$(printf '%.2f' "$p50" 2>/dev/null || echo n/a)" "$(printf '%.2f' "$p99" 2>/dev/null || echo n/a)" "$drop" "$rc" "$held" | tee -a "$summary"
  last="$r $p50 $p99"
  [ "$held" = held ]
}

if [ -n "${RATES:-}" ]; then
  for r in $RATES; do [[ $r =~ ^[1-9][0-9]*$ ]] || die "RATES=$RATES: want positive integers (requests/s)"; done
  summary=$REPORT_DIR/coupon-ceiling-$stamp.txt
  : >"$summary"
  # Rate by rate, the baseline then sagaflow, so that both meet the same
  # moment of this shared machine; each stops at its first rate not held.
  best_bare="0 n/a n/a" best_sagaflow="0 n/a n/a" bare_on=1 saga_on=1
  for r in $RATES; do
    [ $bare_on = 1 ] || [ $saga_on = 1 ] || break
    if [ $bare_on = 1 ]; then
      if try bare "$BARE_URL" "$r"; then best_bare=$last; else bare_on=0; fi
    fi
    if [ $saga_on = 1 ]; then
      if try sagaflow "$BASE_URL" "$r"; then best_sagaflow=$last; else saga_on=0; fi
    fi
  done
  stop_bare
  read -r br b50 b99 <<<"$best_bare"
  read -r sr s50 s99 <<<"$best_sagaflow"
  awk -v br="$br" -v b50="$b50" -v b99="$b99" -v sr="$sr" -v s50="$s50" -v s99="$s99" -v dur="$DURATION" 'BEGIN {
    printf "\nhighest coupon request rate held (p99 < 20 ms, >= 99.9%% answered, <= 1%% dropped; each rate held %s after a 10 s ramp)\n", dur
    printf "%-16s %8s %10s %10s\n", "", "rate/s", "p50 ms", "p99 ms"
    printf "%-16s %8s %10.2f %10.2f\n", "bare", br, b50, b99
    printf "%-16s %8s %10.2f %10.2f\n", "sagaflow", sr, s50, s99
    printf "%-16s %8.2f   (target >= 0.50)\n", "sagaflow/bare", (br > 0 ? sr / br : 0)
  }' | tee -a "$summary"
  log "runs: $summary"
  awk -v br="$br" -v sr="$sr" 'BEGIN { exit !(br > 0 && sr / br >= 0.5) }'
  exit $?
fi

bare_rc=0
run bare "$BARE_URL" "$bare_json" || bare_rc=$?
stop_bare
saga_rc=0
run sagaflow "$BASE_URL" "$saga_json" || saga_rc=$?

read -r b_count b_p50 b_p99 b_drop <<<"$(figures "$bare_json")"
read -r s_count s_p50 s_p99 s_drop <<<"$(figures "$saga_json")"

awk -v hold="$hold" -v rate="$RATE" -v dur="$DURATION" \
  -v bc="$b_count" -v b50="$b_p50" -v b99="$b_p99" -v bd="$b_drop" -v brc="$bare_rc" \
  -v sc="$s_count" -v s50="$s_p50" -v s99="$s_p99" -v sd="$s_drop" -v src="$saga_rc" '
  function num(x) { return x ~ /^[0-9.eE+-]+$/ }
  function rps(c) { return num(c) ? sprintf("%.0f", c / hold) : "n/a" }
  function ms(x) { return num(x) ? sprintf("%.2f", x) : "n/a" }
  function ratio(a, b) { return (num(a) && num(b) && b > 0) ? sprintf("%.2f", a / b) : "n/a" }
  BEGIN {
    printf "\ncoupon requests, RATE=%s/s held for %s (after a 10 s ramp)\n", rate, dur
    printf "%-16s %8s %10s %10s %8s %6s\n", "", "req/s", "p50 ms", "p99 ms", "dropped", "k6 rc"
    printf "%-16s %8s %10s %10s %8s %6s\n", "bare", rps(bc), ms(b50), ms(b99), bd, brc
    printf "%-16s %8s %10s %10s %8s %6s\n", "sagaflow", rps(sc), ms(s50), ms(s99), sd, src
    printf "%-16s %8s %10s %10s\n", "sagaflow/bare", ratio(sc, bc), ratio(s50, b50), ratio(s99, b99)
  }'
log "summaries: $bare_json $saga_json"
exit "$saga_rc"
