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
# Each run goes through loadtest/k6.sh (HTML report in .data/reports/);
# coupon.js's handleSummary() computes the figures (req/s while RATE was
# held, p50, p99, dropped iterations, held or not; see its header) and writes
# them to .data/reports/coupon-{bare,sagaflow}-<UTC timestamp>.json. The
# sagaflow run reads the baseline's and prints the ratios: sagaflow / bare,
# of req/s and of p50 and p99. This script only starts things.
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

[[ $RATE =~ ^[1-9][0-9]*$ ]] || die "RATE=$RATE: want a positive integer (requests/s)"
[[ $DURATION =~ ^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$ ]] || die "DURATION=$DURATION: want a k6 duration such as 20s or 1m30s"
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

# run LABEL URL FIGURES [BASELINE]: coupon.js against URL, its figures to
# FIGURES (and FIGURES.env), ratios against BASELINE's; k6's exit code.
run() {
  local rc=0
  log "== $1: RATE=$RATE DURATION=$DURATION against $2"
  BASE_URL=$2 loadtest/k6.sh loadtest/coupon.js \
    -e "RATE=$RATE" -e "DURATION=$DURATION" -e "LABEL=$1" -e "FIGURES=$3" ${4:+-e "BASELINE=$4"} || rc=$?
  return "$rc"
}

# try LABEL URL RATE: coupon.js against URL at RATE; returns 0 when the rate
# was held, and leaves that run's figures in $last (a FIGURES file).
try() {
  local held=0
  last=$REPORT_DIR/coupon-$1-$3-$stamp.json
  RATE=$3 run "$1" "$2" "$last" || true
  [ -s "$last.env" ] && held=$(sed -n 's/^held=//p' "$last.env")
  printf '%-10s rate %5s/s: %s\n' "$1" "$3" "$([ "$held" = 1 ] && echo held || echo 'not held')" | tee -a "$summary"
  [ "$held" = 1 ]
}

if [ -n "${RATES:-}" ]; then
  for r in $RATES; do [[ $r =~ ^[1-9][0-9]*$ ]] || die "RATES=$RATES: want positive integers (requests/s)"; done
  summary=$REPORT_DIR/coupon-ceiling-$stamp.txt
  : >"$summary"
  # Rate by rate, the baseline then sagaflow, so that both meet the same
  # moment of this shared machine; each stops at its first rate not held.
  best_bare= best_sagaflow= bare_on=1 saga_on=1
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
  [ -n "$best_bare" ] && [ -n "$best_sagaflow" ] || die "a server held none of RATES=$RATES (runs: $summary)"
  # The two highest rates held, side by side: the figures are the runs' own.
  bare_rate=$(. "$best_bare.env" && echo "$rate")
  saga_rate=$(. "$best_sagaflow.env" && echo "$rate")
  {
    printf '\nhighest coupon request rate held (p99 < 20 ms, >= 99.9%% answered, <= 1%% dropped; each held %s after a 10 s ramp)\n' "$DURATION"
    for f in "$best_bare" "$best_sagaflow"; do
      (. "$f.env" && printf '%-10s %6s/s  p50 %8s ms  p99 %8s ms\n' "$(basename "$f" | cut -d- -f2)" "$rate" "$p50_ms" "$p99_ms")
    done
    printf 'sagaflow/bare %s (target >= 0.50)\n' "$(awk -v s="$saga_rate" -v b="$bare_rate" 'BEGIN { printf "%.2f", s / b }')"
  } | tee -a "$summary"
  log "runs: $summary"
  [ $((saga_rate * 2)) -ge "$bare_rate" ]
  exit $?
fi

run bare "$BARE_URL" "$bare_json" || true
stop_bare
saga_rc=0
run sagaflow "$BASE_URL" "$saga_json" "$bare_json" || saga_rc=$?
log "figures: $bare_json $saga_json"
exit "$saga_rc"
