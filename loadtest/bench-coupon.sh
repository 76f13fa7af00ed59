#!/usr/bin/env bash
# bench-coupon.sh — the coupon hot path, sagaflow next to the bare baseline.
#
#   loadtest/bench-coupon.sh          (or: make bench-coupon)
#   RATE=1000 DURATION=10s loadtest/bench-coupon.sh
#   CLUSTER=1 loadtest/bench-coupon.sh    (or: make bench-coupon CLUSTER=1)
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
# With CLUSTER=1 it sets the embedded deployment next to the production
# topology instead, in one run: `make cluster` must be up (GET /readyz
# answers 200 on every CLUSTER_URLS, worker1 and worker2 are up), and no
# `make run` is needed (nor possible next to the cluster: api1 holds 8080
# and its Temporal 7233). With the same RATE and DURATION, one after the
# other:
#   bare        loadtest/bare, as above
#   embedded    a private `sagaflow dev` (loadtest/privatedev.sh: its own
#               database, vhost, Redis database REDIS_DB, data directory and
#               ports from PORT_BASE), started for its run and stopped after
#   cluster-2w  the cluster with its 2 worker processes, the requests spread
#               over all CLUSTER_URLS (coupon.js's BASE_URLS, turn by turn:
#               the two APIs have no load balancer in front)
#   cluster-1w  the same with worker2 stopped (CLUSTER_SCRIPT stop worker2;
#               started again at the end, also on failure or Ctrl-C)
# and prints one table of the four: req/s held, p50, p99, held or not, the
# campaign's drain time (issued == accepted) and req/s as a ratio to bare,
# every figure from coupon.js's handleSummary (each sagaflow run has the
# bare run as its BASELINE). With RATES as well (make bench-coupon-ceiling
# CLUSTER=1) it searches the four ceilings rate by rate as above (worker2
# stopped for cluster-1w and started again at each rate), and prints each
# mode's highest rate held with its ratio to bare's (target >= 0.50).
#
# Environment:
#   RATES     e.g. "500 1000 1500 2000 3000": search the ceilings (see above)
#   RATE      requests/s after coupon.js's 10 s ramp (default 1000)
#   DURATION  how long RATE is held (k6 duration, default 20s)
#   BASE_URL  sagaflow (default http://127.0.0.1:8080)
#   BARE_ADDR where the baseline listens (default 127.0.0.1:18080)
#   API_KEY, STOCK, USERS  passed on to coupon.js (see its header)
#   CLUSTER=1     the comparison with the cluster (see above)
#   CLUSTER_URLS  the cluster's APIs (default "http://127.0.0.1:8080 http://127.0.0.1:8081")
#   CLUSTER_SCRIPT  what stops and starts worker2 (default deploy/cluster.sh
#             of this checkout; the one that started the cluster)
#   PORT_BASE, REDIS_DB  the private sagaflow dev's (default 24000 and 12)
#
# Exit status: that of k6's run against sagaflow (0 ok, 99 thresholds failed,
# 108 aborted in setup, ...), with CLUSTER=1 the first non-zero one of the
# three sagaflow runs; with RATES, 0 when each sagaflow mode's highest rate
# held is at least half the bare one's, else 1; 2 when something is missing
# (sagaflow or the cluster not ready, BARE_ADDR taken, bin/bare or the
# private sagaflow does not start).
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
CLUSTER=${CLUSTER:-}
CLUSTER_SCRIPT=${CLUSTER_SCRIPT:-$ROOT/deploy/cluster.sh}
CLUSTER_URLS=${CLUSTER_URLS:-http://127.0.0.1:8080 http://127.0.0.1:8081}
PORT_BASE=${PORT_BASE:-24000}
REDIS_DB=${REDIS_DB:-12}
export RATE DURATION

log() { printf 'bench-coupon: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 2
}

[[ $RATE =~ ^[1-9][0-9]*$ ]] || die "RATE=$RATE: want a positive integer (requests/s)"
[[ $DURATION =~ ^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$ ]] || die "DURATION=$DURATION: want a k6 duration such as 20s or 1m30s"
case $CLUSTER in
  '' | 0) CLUSTER=0 ;;
  1) ;;
  *) die "CLUSTER=$CLUSTER: want 1 (or nothing)" ;;
esac
command -v curl >/dev/null 2>&1 || die "curl not found"

# up URL: GET URL/readyz answers 200 within 3 s.
up() { curl -fsS -o /dev/null --max-time 3 "$1/readyz" 2>/dev/null; }

# sagaflow first: no point in benchmarking the baseline alone.
if [ "$CLUSTER" = 1 ]; then
  urls=
  for u in $CLUSTER_URLS; do
    up "${u%/}" || die "the cluster is not ready at ${u%/}/readyz; start it first (make cluster; make cluster-status shows each process), then retry"
    urls="$urls ${u%/}"
  done
  CLUSTER_URLS=${urls# }
  [ -n "$CLUSTER_URLS" ] || die "CLUSTER_URLS is empty"
  [ -x "$CLUSTER_SCRIPT" ] || die "CLUSTER_SCRIPT=$CLUSTER_SCRIPT: not an executable script"
  status=$("$CLUSTER_SCRIPT" status) || die "$CLUSTER_SCRIPT status failed"
  for w in worker1 worker2; do
    [ "$(awk -v w=$w '$1 == w { print $4 }' <<<"$status")" = up ] ||
      die "$w of the cluster is not up ($CLUSTER_SCRIPT status); start it ($CLUSTER_SCRIPT start $w), then retry"
  done
else
  up "$BASE_URL" || die "sagaflow is not ready at $BASE_URL/readyz; start the stack and sagaflow first (make run), then retry"
fi
up "$BARE_URL" && die "something already answers on $BARE_URL; stop it or set BARE_ADDR"

# bin/bare: built when missing or older than its sources or go.mod/go.sum.
if [ ! -x "$BARE" ] || [ -n "$(find loadtest/bare go.mod go.sum -newer "$BARE" -print -quit)" ]; then
  log "building $BARE"
  go build -o "$BARE" ./loadtest/bare
fi

mkdir -p "$REPORT_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
bare_log=$REPORT_DIR/bare-$stamp.log

# shellcheck source=loadtest/privatedev.sh
. loadtest/privatedev.sh

bare_pid=
stop_bare() {
  if [ -n "$bare_pid" ]; then
    kill "$bare_pid" 2>/dev/null || true
    wait "$bare_pid" 2>/dev/null || true
    bare_pid=
  fi
}
# workers N: the cluster runs N worker processes: 1 stops worker2, 2 starts
# it again (each only when needed).
worker2_stopped=0
workers() {
  if [ "$1" = 1 ] && [ $worker2_stopped = 0 ]; then
    log "stopping worker2: $CLUSTER_SCRIPT stop worker2"
    worker2_stopped=1 # from here on, started again on exit
    "$CLUSTER_SCRIPT" stop worker2
  elif [ "$1" = 2 ] && [ $worker2_stopped = 1 ]; then
    log "starting worker2 again: $CLUSTER_SCRIPT start worker2"
    "$CLUSTER_SCRIPT" start worker2
    worker2_stopped=0
  fi
}
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  stop_bare
  workers 2 || log "worker2 is still stopped; start it: $CLUSTER_SCRIPT start worker2"
  privatedev_cleanup
}
trap cleanup EXIT
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

# The modes, in the order they run (rate by rate with RATES).
if [ "$CLUSTER" = 1 ]; then
  modes=(bare embedded cluster-2w cluster-1w)
  privatedev_setup "sagaflow_bc_$(date -u +%H%M%S)_$$" "$ROOT/.data/bench-coupon-$stamp" "$PORT_BASE" "$REDIS_DB"
else
  modes=(bare sagaflow)
fi

# urls_of MODE: the base URL(s) coupon.js sends MODE's requests to.
urls_of() {
  case $1 in
    bare) echo "$BARE_URL" ;;
    sagaflow) echo "$BASE_URL" ;;
    embedded) echo "$privatedev_url" ;;
    cluster-*) echo "$CLUSTER_URLS" ;;
  esac
}
# prepare MODE: start what MODE's run needs; finish MODE: stop it again
# (the private sagaflow idles no CPU during the other modes' runs).
prepare() {
  case $1 in
    embedded) privatedev_start "$REPORT_DIR/coupon-embedded-$stamp.log" ;;
    cluster-2w) workers 2 ;;
    cluster-1w) workers 1 ;;
  esac
}
finish() {
  case $1 in
    embedded) privatedev_stop ;;
  esac
}

# run LABEL URLS FIGURES [BASELINE]: coupon.js against URLS (one base URL or
# several), its figures to FIGURES (and FIGURES.env), ratios against
# BASELINE's; k6's exit code.
run() {
  local rc=0
  log "== $1: RATE=$RATE DURATION=$DURATION against $2"
  BASE_URL=${2%% *} loadtest/k6.sh loadtest/coupon.js \
    -e "RATE=$RATE" -e "DURATION=$DURATION" -e "LABEL=$1" -e "FIGURES=$3" -e "BASE_URLS=$2" ${4:+-e "BASELINE=$4"} || rc=$?
  return "$rc"
}

# fig FIGURES KEY: KEY of FIGURES.env, as handleSummary wrote it; n/a when
# the run wrote none (k6 aborted).
fig() {
  local v=
  [ -s "$1.env" ] && v=$(sed -n "s/^$2=//p" "$1.env")
  echo "${v:-n/a}"
}

# try LABEL RATE: coupon.js against LABEL's URLs at RATE; returns 0 when the
# rate was held, and leaves that run's figures in $last (a FIGURES file).
try() {
  last=$REPORT_DIR/coupon-$1-$2-$stamp.json
  RATE=$2 run "$1" "$(urls_of "$1")" "$last" || true
  printf '%-10s rate %5s/s: %s\n' "$1" "$2" "$([ "$(fig "$last" held)" = 1 ] && echo held || echo 'not held')" | tee -a "$summary"
  [ "$(fig "$last" held)" = 1 ]
}

if [ -n "${RATES:-}" ]; then
  for r in $RATES; do [[ $r =~ ^[1-9][0-9]*$ ]] || die "RATES=$RATES: want positive integers (requests/s)"; done
  summary=$REPORT_DIR/coupon-ceiling-$stamp.txt
  : >"$summary"
  # Rate by rate, every mode still in the race, so that all meet the same
  # moment of this shared machine; each stops at its first rate not held.
  declare -A on best
  for m in "${modes[@]}"; do on[$m]=1 best[$m]=''; done
  for r in $RATES; do
    left=0
    for m in "${modes[@]}"; do [ "${on[$m]}" = 0 ] || left=1; done
    [ $left = 1 ] || break
    for m in "${modes[@]}"; do
      [ "${on[$m]}" = 1 ] || continue
      prepare "$m"
      if try "$m" "$r"; then best[$m]=$last; else on[$m]=0; fi
      finish "$m"
    done
  done
  stop_bare
  workers 2
  [ -n "${best[bare]}" ] || die "the bare baseline held none of RATES=$RATES (runs: $summary)"
  [ "$CLUSTER" = 1 ] || [ -n "${best[sagaflow]}" ] || die "sagaflow held none of RATES=$RATES (runs: $summary)"
  bare_rate=$(fig "${best[bare]}" rate)
  # row MODE: MODE's highest rate held with its p50/p99 (the run's own figures).
  row() {
    local f=${best[$1]}
    if [ -z "$f" ]; then
      printf '%-10s   none held\n' "$1"
    else
      printf '%-10s %6s/s  p50 %8s ms  p99 %8s ms' "$1" "$(fig "$f" rate)" "$(fig "$f" p50_ms)" "$(fig "$f" p99_ms)"
      [ "$CLUSTER" = 1 ] && [ "$1" != bare ] && printf '  %s/bare %s' "$1" "$(awk -v s="$(fig "$f" rate)" -v b="$bare_rate" 'BEGIN { printf "%.2f", s / b }')"
      printf '\n'
    fi
  }
  {
    printf '\nhighest coupon request rate held (p99 < 20 ms, >= 99.9%% answered, <= 1%% dropped; each held %s after a 10 s ramp)\n' "$DURATION"
    for m in "${modes[@]}"; do row "$m"; done
    if [ "$CLUSTER" = 1 ]; then
      printf 'target: each mode >= 0.50 of bare\n'
    else
      printf 'sagaflow/bare %s (target >= 0.50)\n' "$(awk -v s="$(fig "${best[sagaflow]}" rate)" -v b="$bare_rate" 'BEGIN { printf "%.2f", s / b }')"
    fi
  } | tee -a "$summary"
  log "runs: $summary"
  for m in "${modes[@]}"; do
    [ "$m" = bare ] && continue
    [ -n "${best[$m]}" ] && [ $(($(fig "${best[$m]}" rate) * 2)) -ge "$bare_rate" ] || exit 1
  done
  exit 0
fi

bare_json=$REPORT_DIR/coupon-bare-$stamp.json
run bare "$BARE_URL" "$bare_json" || true
stop_bare
rc=0
for m in "${modes[@]:1}"; do
  prepare "$m"
  k=0
  run "$m" "$(urls_of "$m")" "$REPORT_DIR/coupon-$m-$stamp.json" "$bare_json" || k=$?
  [ $rc != 0 ] || rc=$k
  finish "$m"
done
if [ "$CLUSTER" = 1 ]; then
  workers 2
  summary=$REPORT_DIR/coupon-cluster-$stamp.txt
  {
    printf '\ncoupon requests, RATE=%s/s held for %s after a 10 s ramp, one run of each mode (figures: coupon.js handleSummary)\n' "$RATE" "$DURATION"
    printf '%-10s %8s %9s %9s %11s %8s %14s\n' mode 'req/s' 'p50 ms' 'p99 ms' held 'drain s' 'req/s vs bare'
    for m in "${modes[@]}"; do
      f=$REPORT_DIR/coupon-$m-$stamp.json
      case $(fig "$f" held) in 1) held=yes ;; 0) held=no ;; *) held='no figures' ;; esac
      ratio=$(fig "$f" req_ratio)
      [ "$m" = bare ] && ratio=-
      printf '%-10s %8s %9s %9s %11s %8s %14s\n' "$m" "$(fig "$f" req_per_s)" "$(fig "$f" p50_ms)" "$(fig "$f" p99_ms)" "$held" "$(fig "$f" drain_s)" "$ratio"
    done
  } | tee "$summary"
  log "table: $summary"
fi
log "figures: $REPORT_DIR/coupon-*-$stamp.json"
exit "$rc"
