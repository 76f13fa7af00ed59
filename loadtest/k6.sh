#!/usr/bin/env bash
# k6.sh — run a k6 load-test script against a running sagaflow stack.
#
#   loadtest/k6.sh SCRIPT [k6 run args...]   run SCRIPT, write an HTML report
#   loadtest/k6.sh --install-only            only make sure bin/k6 is there
#   loadtest/k6.sh --help
#
# k6 is pinned (K6_VERSION below) and built once from source into <repo>/bin/k6
# with `go install` (about 2 minutes cold; no Docker, no xk6 extensions). It is
# rebuilt only when bin/k6 is missing or reports another version.
#
# Each run writes k6's web-dashboard HTML report to
#   <repo>/.data/reports/<script-name>-<UTC timestamp>.html
# with the dashboard's HTTP server switched off (K6_WEB_DASHBOARD_PORT=-1:
# nothing listens, k6 exits as soon as the test ends) and a 2 s sampling period
# (k6's default of 10 s leaves a short smoke run with a near-empty graph).
# k6's anonymous usage report is disabled: the only traffic is to BASE_URL.
#
# Environment:
#   BASE_URL   sagaflow API base URL      (default http://127.0.0.1:8080)
#   API_KEY    bearer key for /v1 routes  (default demo-key)
#   K6_REPORT_DIR  where reports go       (default <repo>/.data/reports)
#   K6_WEB_DASHBOARD_PERIOD  report sampling period (default 2s)
# BASE_URL and API_KEY reach the script as __ENV.BASE_URL / __ENV.API_KEY
# (passed with -e; a later `-e NAME=...` among the extra args wins).
#
# Exit status: k6's own (0 ok, 99 thresholds failed, 107 script error, ...).
set -euo pipefail

K6_VERSION=v1.8.1
K6_MODULE=go.k6.io/k6

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN_DIR=$ROOT/bin
K6=$BIN_DIR/k6
REPORT_DIR=${K6_REPORT_DIR:-$ROOT/.data/reports}

BASE_URL=${BASE_URL:-http://127.0.0.1:8080}
API_KEY=${API_KEY:-demo-key}

log() { printf 'k6.sh: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 2
}

usage() {
  sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# k6_ok: bin/k6 exists and `k6 version` names the pinned version.
# Its first line looks like "k6 v1.8.1 (commit/..., go1.26.8, linux/amd64)".
k6_ok() {
  local out
  [ -x "$K6" ] || return 1
  out=$("$K6" version 2>/dev/null) || return 1
  [[ $out == "k6 ${K6_VERSION} "* || $out == "k6 ${K6_VERSION}" ]]
}

install_k6() {
  k6_ok && return 0
  command -v go >/dev/null 2>&1 || die "go not found in PATH; it is needed to build k6"
  mkdir -p "$BIN_DIR"
  # Serialise concurrent installs (two `make loadtest` at once).
  exec 9>"$BIN_DIR/.k6-install.lock"
  if command -v flock >/dev/null 2>&1; then
    flock 9
  fi
  if ! k6_ok; then
    log "building k6 ${K6_VERSION} into ${K6} (first time only, takes a few minutes)..."
    # Module mode from a neutral directory: the project's go.mod/go.work must
    # not influence the k6 build, and nothing here touches them.
    (cd "$BIN_DIR" && GOBIN=$BIN_DIR GOWORK=off go install "${K6_MODULE}@${K6_VERSION}")
    k6_ok || die "built ${K6}, but '${K6} version' does not report ${K6_VERSION}: $("$K6" version 2>&1 || true)"
    log "installed: $("$K6" version)"
  fi
  exec 9>&-
}

[ $# -ge 1 ] || {
  usage >&2
  exit 2
}

case $1 in
  -h | --help)
    usage
    exit 0
    ;;
  --install-only)
    install_k6
    printf '%s\n' "$K6"
    exit 0
    ;;
  -*)
    die "first argument must be a script (or --install-only / --help), got: $1"
    ;;
esac

script=$1
shift
[ -f "$script" ] || die "no such script: $script"

install_k6

name=$(basename "$script")
name=${name%.*}
mkdir -p "$REPORT_DIR"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
report=$REPORT_DIR/$name-$stamp.html
n=1
while [ -e "$report" ]; do # two runs in the same second
  report=$REPORT_DIR/$name-$stamp-$n.html
  n=$((n + 1))
done

log "script:  $script"
log "target:  $BASE_URL"
log "report:  $report"

rc=0
K6_WEB_DASHBOARD=true \
  K6_WEB_DASHBOARD_PORT=-1 \
  K6_WEB_DASHBOARD_PERIOD=${K6_WEB_DASHBOARD_PERIOD:-2s} \
  K6_WEB_DASHBOARD_OPEN=false \
  K6_WEB_DASHBOARD_EXPORT=$report \
  K6_NO_USAGE_REPORT=true \
  "$K6" run \
  -e "BASE_URL=$BASE_URL" \
  -e "API_KEY=$API_KEY" \
  "$@" \
  "$script" || rc=$?

if [ -s "$report" ]; then
  log "HTML report written to $report"
else
  log "no HTML report was written (expected $report; k6 skips it when the run was too short, e.g. aborted in setup)"
fi
case $rc in
  0) ;;
  99) log "thresholds failed (k6 exit code 99)" ;;
  *) log "k6 exited with code $rc" ;;
esac
exit "$rc"
