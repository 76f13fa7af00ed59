#!/usr/bin/env bash
# bench-tracing.sh — what exporting traces costs the coupon hot path.
#
#   loadtest/bench-tracing.sh            (make bench-tracing runs it after the sync comparison)
#   ROUNDS=4 LOOPS=closed loadtest/bench-tracing.sh
#
# Runs loadtest/coupon.js against a private `sagaflow dev` started anew for
# each run, in each of the modes of MODES (default "off on"):
#   off  no OTEL_* variable: the provider samples nothing, nothing is exported
#   on   OTEL_EXPORTER_OTLP_ENDPOINT at bin/otlpsink (loadtest/otlpsink: an
#        OTLP/HTTP receiver that counts spans and drops them, so no trace
#        backend competes for the cores) and OTEL_TRACES_SAMPLER=always_on
#   sampled  the same exporter, with OTEL_TRACES_SAMPLER=parentbased_traceidratio
#        and OTEL_TRACES_SAMPLER_ARG=SAMPLE_RATIO (default 0.1): head sampling,
#        as a hot path would be traced in production
# and in each of two loops (LOOPS):
#   closed  VUS users send requests back to back (coupon.js VUS): req/s is
#           the most the machine answers, so on/off of it is the throughput
#           tracing costs at the ceiling
#   open    RATE requests/s (coupon.js's default): whether the rate is held
#           and at which latency, and the CPU per request at a given load
# Each loop runs ROUNDS rounds of one run per mode, in ABBA order (MODES in
# order in odd rounds, in reverse in even ones), then prints, per mode, the
# median over the rounds of mode/off of req/s and of sagaflow's CPU time per
# answered request. coupon.js's handleSummary() writes each run's figures to
# .data/reports/tracing-<loop>-<mode>-<n>-<stamp>.json (and .env); the
# summary, one line per run and the medians, is tracing-<stamp>.txt. The
# spans the sink received during each run are printed next to it, to show
# that export really happened.
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
#   LOOPS     "closed open" (default), or one of them
#   MODES     "off on" (default), "off on sampled", "off sampled"
#   VUS       users of the closed loop (default 20)
#   RATE      requests/s of the open loop after coupon.js's 10 s ramp (default 1000)
#   DURATION  how long each run is measured after its 10 s ramp (default 20s)
#   ROUNDS    off/on pairs per loop (default 1)
#   QUIET_WAIT how long a run waits for an idle machine, at most (default 90 s)
#   PORT_BASE first port of the private range (default 23000)
#   REDIS_DB  Redis database number for the private sagaflow (default 11)
#   PROFILE=1 also take a 10 s CPU profile (pprof) of sagaflow in the middle
#             of each hold, to .data/reports/tracing-<loop>-<mode>-<n>-<stamp>.pprof
#
# Exit status: 0 when every run went through (thresholds included), else the
# first non-zero k6 exit status; 2 when something is missing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

RATE=${RATE:-1000}
DURATION=${DURATION:-20s}
ROUNDS=${ROUNDS:-1}
VUS=${VUS:-20}
MODES=${MODES:-off on}
SAMPLE_RATIO=${SAMPLE_RATIO:-0.1}
LOOPS=${LOOPS:-closed open}
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
[[ $VUS =~ ^[1-9][0-9]*$ ]] || die "VUS=$VUS: want a positive integer"
for l in $LOOPS; do [[ $l == open || $l == closed ]] || die "LOOPS=$LOOPS: want open and/or closed"; done
[[ " $MODES " == *" off "* ]] || die "MODES=$MODES: want off and one or more of on, sampled"
for m in $MODES; do [[ $m == off || $m == on || $m == sampled ]] || die "MODES=$MODES: want off, on, sampled"; done
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
  local otel=(OTEL_EXPORTER_OTLP_ENDPOINT="http://$sink" OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf)
  case $1 in
    off) otel=() ;;
    on) otel+=(OTEL_TRACES_SAMPLER=always_on) ;;
    sampled) otel+=(OTEL_TRACES_SAMPLER=parentbased_traceidratio "OTEL_TRACES_SAMPLER_ARG=$SAMPLE_RATIO") ;;
  esac
  privatedev_start "$REPORT_DIR/tracing-sagaflow-$1-$stamp.log" "${otel[@]}"
}
# quiet: waits, at most QUIET_WAIT seconds, until the machine's CPUs were
# at least 90% idle over 2 s, so that no run starts in another process's
# burst (PostgreSQL's autovacuum after the sync runs of make bench-tracing,
# a build): on this 2-core machine such a burst weighed on one mode of a
# pair and moved its ratio by 10 points. Prints how idle it found them.
quiet() {
  local t u0 n0 s0 i0 w0 u1 n1 s1 i1 w1 pct=0
  for ((t = 0; t < ${QUIET_WAIT:-90}; t += 2)); do
    read -r _ u0 n0 s0 i0 w0 _ </proc/stat
    sleep 2
    read -r _ u1 n1 s1 i1 w1 _ </proc/stat
    pct=$(((i1 + w1 - i0 - w0) * 100 / (u1 + n1 + s1 + i1 + w1 - u0 - n0 - s0 - i0 - w0 + 1)))
    [ "$pct" -ge 90 ] && break
  done
  log "machine ${pct}% idle before the run"
}
# cpu: the CPU time (user + system, in clock ticks) sagaflow has used so far.
cpu() { awk '{ print $14 + $15 }' "/proc/$privatedev_pid/stat"; }

rc=0
summary=$REPORT_DIR/tracing-$stamp.txt
: >"$summary"
ratios=$REPORT_DIR/tracing-ratios-$stamp.txt
: >"$ratios"
hz=$(getconf CLK_TCK)
# Set by run (the first five from the figures' .env).
req_per_s='' requests='' p50_ms='' p99_ms='' held='' cpu_per_req='' figures=''
# run MODE LOOP N: one k6 run of LOOP (open: RATE/s; closed: VUS back to
# back) against sagaflow started in MODE; prints its line to the summary and
# sets req_per_s, cpu_per_req (µs) and the figures file of the run.
run() {
  local mode=$1 loop=$2 n=$3 k=0 ticks got before cpu0 args
  figures=$REPORT_DIR/tracing-$loop-$mode-$n-$stamp.json
  quiet
  start "$mode"
  before=$(spans) cpu0=$(cpu)
  if [ "${PROFILE:-}" = 1 ]; then
    (sleep 12 && curl -fsS -o "${figures%.json}.pprof" "http://$privatedev_pprof/debug/pprof/profile?seconds=10") &
  fi
  args=(-e "RATE=$RATE")
  [ "$loop" = closed ] && args=(-e "VUS=$VUS")
  log "== $mode, $loop loop (round $n): ${args[*]} DURATION=$DURATION"
  BASE_URL=$privatedev_url loadtest/k6.sh loadtest/coupon.js "${args[@]}" -e "DURATION=$DURATION" \
    -e "LABEL=tracing-$loop-$mode" -e "FIGURES=$figures" || k=$?
  [ $rc = 0 ] && rc=$k
  ticks=$(($(cpu) - cpu0))
  privatedev_stop # flushes the spans still buffered
  got=$(($(spans) - before))
  # shellcheck disable=SC1090 # written by coupon.js's handleSummary()
  . "$figures.env"
  cpu_per_req=$(awk -v t="$ticks" -v hz="$hz" -v n="$requests" 'BEGIN { printf "%.0f", (n > 0 ? t / hz / n * 1e6 : 0) }')
  printf 'coupon tracing %-3s %-6s round %d: %8s req/s  p50 %8s ms  p99 %8s ms  held=%s  spans exported %6d (%s per request)  sagaflow CPU %s s, %s µs per request\n' \
    "$mode" "$loop" "$n" "$req_per_s" "$p50_ms" "$p99_ms" "$held" "$got" \
    "$(awk -v s="$got" -v n="$requests" 'BEGIN { printf "%.2f", (n > 0 ? s / n : 0) }')" \
    "$(awk -v t="$ticks" -v hz="$hz" 'BEGIN { printf "%.2f", t / hz }')" "$cpu_per_req" | tee -a "$summary"
}

for loop in $LOOPS; do
  for n in $(seq 1 "$ROUNDS"); do
    # ABBA: the modes in order in odd rounds, in reverse in even ones, so
    # that a drift of the machine during the rounds weighs on all alike.
    order=$MODES
    # shellcheck disable=SC2086 # one word per mode
    [ $((n % 2)) = 0 ] && order=$(printf '%s\n' $MODES | tac | xargs)
    declare -A rps=() cpr=()
    for mode in $order; do
      run "$mode" "$loop" "$n"
      rps[$mode]=$req_per_s cpr[$mode]=$cpu_per_req
    done
    for mode in $MODES; do
      [ "$mode" = off ] && continue
      awk -v loop="$loop" -v mode="$mode" -v n="$n" -v r1="${rps[$mode]}" -v r0="${rps[off]}" -v c1="${cpr[$mode]}" -v c0="${cpr[off]}" \
        'BEGIN { printf "%s %s %d %.3f %.3f\n", loop, mode, n, r1 / r0, c1 / c0 }' >>"$ratios"
    done
  done
done
# The median over the rounds of each mode/off ratio, per loop.
for loop in $LOOPS; do
  for mode in $MODES; do
    [ "$mode" = off ] && continue
    awk -v loop="$loop" -v mode="$mode" '$1 == loop && $2 == mode { r[++k] = $4; c[k] = $5 }
      function median(a, k,   i, j, t) {
        for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
      }
      END { if (k) printf "coupon tracing %s/off, %s loop, median of %d rounds: req/s %.3f, sagaflow CPU per request %.3f\n", mode, loop, k, median(r, k), median(c, k) }' "$ratios" | tee -a "$summary"
  done
done
log "load average: $(cut -d' ' -f1-3 /proc/loadavg); runs: $summary; figures: $REPORT_DIR/tracing-*-$stamp.json"
exit "$rc"
