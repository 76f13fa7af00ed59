#!/usr/bin/env bash
# bench-tracing.sh — what exporting traces costs the coupon hot path.
#
#   loadtest/bench-tracing.sh            (make bench-tracing runs it after the sync comparison)
#   RATE=1500 DURATION=20s ROUNDS=2 loadtest/bench-tracing.sh
#
# Runs loadtest/coupon.js with the same RATE and DURATION against a private
# `sagaflow dev` started ROUNDS times in each of two modes, off then on:
#   off  no OTEL_* variable: the provider samples nothing, nothing is exported
#   on   OTEL_EXPORTER_OTLP_ENDPOINT at bin/otlpsink (loadtest/otlpsink: an
#        OTLP/HTTP receiver that counts spans and drops them, so no trace
#        backend competes for the cores) and OTEL_TRACES_SAMPLER=always_on
# coupon.js's handleSummary() writes each run's figures (req/s while RATE was
# held, p50, p99, held or not) to .data/reports/tracing-<mode>-<n>-<stamp>.json
# (and .env), and the "on" run of each round prints its ratios against the
# "off" run before it (BASELINE). The spans the sink received during each
# run are printed next to it, to show that export really happened, and the
# CPU time sagaflow used during the k6 run (both modes serve the same offered
# requests, so on/off of it is the CPU cost of tracing, steadier than req/s
# on a shared machine).
#
# It never touches a running `make run`: the private sagaflow is
# loadtest/privatedev.sh's (its own database, created on the stack's
# PostgreSQL and dropped at the end, its own RabbitMQ virtual host, Redis
# database REDIS_DB, its own SAGAFLOW_DATA_DIR and its own ports: PORT_BASE
# + offsets, API +80, Temporal frontend +233, simulators +91..+95, pprof +60;
# no Web UI), and the sink listens on PORT_BASE +318. The stack (make up)
# must be running.
#
# Environment:
#   RATE      requests/s after coupon.js's 10 s ramp (default 1000)
#   DURATION  how long RATE is held (default 20s)
#   ROUNDS    off/on pairs (default 1)
#   PORT_BASE first port of the private range (default 23000)
#   REDIS_DB  Redis database number for the private sagaflow (default 11)
#   PROFILE=1 also take a 10 s CPU profile (pprof) of sagaflow in the middle
#             of each hold, to .data/reports/tracing-<mode>-<n>-<stamp>.pprof
#
# Exit status: 0 when every run went through (thresholds included), else the
# first non-zero k6 exit status; 2 when something is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RATE=${RATE:-1000}
DURATION=${DURATION:-20s}
ROUNDS=${ROUNDS:-1}
PORT_BASE=${PORT_BASE:-23000}
REDIS_DB=${REDIS_DB:-11}
REPORT_DIR=${K6_REPORT_DIR:-$ROOT/.data/reports}
stamp=$(date -u +%Y%m%dT%H%M%SZ)
name=sagaflow_bt_$(date -u +%H%M%S)_$$

log() { printf 'bench-tracing: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 2
}

[[ $RATE =~ ^[1-9][0-9]*$ ]] || die "RATE=$RATE: want a positive integer (requests/s)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS=$ROUNDS: want a positive integer"
# shellcheck source=loadtest/privatedev.sh
. loadtest/privatedev.sh

sink_pid=
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
  [ -z "$sink_pid" ] || kill "$sink_pid" 2>/dev/null || true
  [ -z "$sink_pid" ] || wait "$sink_pid" 2>/dev/null || true
  privatedev_cleanup
}
trap cleanup EXIT
trap 'exit 130' INT TERM
# The private database, virtual host and data directory, bin/sagaflow built,
# its ports and the sink's (PORT_BASE + 318) checked free.
privatedev_setup "$name" "$ROOT/.data/bench-tracing-$stamp" "$PORT_BASE" "$REDIS_DB" 318
sink=127.0.0.1:$((PORT_BASE + 318))

mkdir -p "$REPORT_DIR"
log "building bin/otlpsink"
go build -o bin/otlpsink ./loadtest/otlpsink
loadtest/k6.sh --install-only >/dev/null

bin/otlpsink -addr "$sink" >"$REPORT_DIR/otlpsink-$stamp.log" 2>&1 &
sink_pid=$!
spans() { curl -fsS --max-time 3 "http://$sink/spans"; }
for _ in $(seq 1 50); do spans >/dev/null 2>&1 && break; sleep 0.1; done
spans >/dev/null || die "bin/otlpsink does not answer on $sink"

# start MODE: sagaflow dev in MODE (off/on) in the background.
start() {
  local otel=()
  [ "$1" = on ] && otel=(OTEL_EXPORTER_OTLP_ENDPOINT="http://$sink" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf OTEL_TRACES_SAMPLER=always_on)
  privatedev_start "$REPORT_DIR/tracing-sagaflow-$1-$stamp.log" "${otel[@]}"
}
# cpu: the CPU time (user + system, in clock ticks) sagaflow has used so far.
cpu() { awk '{ print $14 + $15 }' "/proc/$privatedev_pid/stat"; }

rc=0
summary=$REPORT_DIR/tracing-$stamp.txt
: >"$summary"
for n in $(seq 1 "$ROUNDS"); do
  base=
  for mode in off on; do
    figures=$REPORT_DIR/tracing-$mode-$n-$stamp.json
    start "$mode"
    before=$(spans) cpu0=$(cpu)
    if [ "${PROFILE:-}" = 1 ]; then
      (sleep 12 && curl -fsS -o "${figures%.json}.pprof" "http://$privatedev_pprof/debug/pprof/profile?seconds=10") &
    fi
    log "== $mode (round $n): RATE=$RATE DURATION=$DURATION"
    k=0
    BASE_URL=$privatedev_url loadtest/k6.sh loadtest/coupon.js -e "RATE=$RATE" -e "DURATION=$DURATION" \
      -e "LABEL=tracing-$mode" -e "FIGURES=$figures" ${base:+-e "BASELINE=$base"} || k=$?
    [ $rc = 0 ] && rc=$k
    ticks=$(($(cpu) - cpu0))
    privatedev_stop # flushes the spans still buffered
    got=$(($(spans) - before))
    (. "$figures.env" && printf 'coupon tracing %-3s round %d: %8s req/s  p50 %8s ms  p99 %8s ms  held=%s  spans exported %6d  sagaflow CPU %s s\n' \
      "$mode" "$n" "$req_per_s" "$p50_ms" "$p99_ms" "$held" "$got" "$(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }')") | tee -a "$summary"
    base=$figures
  done
done
log "load average: $(cut -d' ' -f1-3 /proc/loadavg); runs: $summary; figures: $REPORT_DIR/tracing-*-$stamp.json"
exit "$rc"
