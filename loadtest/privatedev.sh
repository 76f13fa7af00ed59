# shellcheck shell=bash
# privatedev.sh — a private `sagaflow dev` for the benchmark scripts, one
# that never touches a running `make run` or `make cluster`. Sourced (not
# run) by loadtest/bench-tracing.sh and loadtest/bench-coupon.sh (CLUSTER=1):
#
#   . loadtest/privatedev.sh
#   trap privatedev_cleanup EXIT            (or a cleanup of yours that calls it)
#   privatedev_setup NAME DATA PORT_BASE REDIS_DB [OFFSET ...]
#   privatedev_start LOG [VAR=value ...]    as often as needed, one at a time
#   ... load on $privatedev_url ...
#   privatedev_stop
#
# privatedev_setup checks that the ports are free (its own and PORT_BASE +
# each OFFSET, for the caller's own servers), builds bin/sagaflow, and
# gives the private sagaflow its own database NAME (created on the stack's
# PostgreSQL), its own RabbitMQ virtual host NAME (created through the
# management API, with the stack's AMQP user granted on it), Redis database
# REDIS_DB, SAGAFLOW_DATA_DIR DATA (its SQLite Temporal server), and its own
# ports: PORT_BASE + 80 API, +233 Temporal frontend, +60 pprof, +91..+95 the
# simulators; no Web UI. The stack (make up) must be running: it reads
# deploy/stack.sh env. It sets privatedev_url (http://127.0.0.1:PORT_BASE+80)
# and privatedev_pprof (127.0.0.1:PORT_BASE+60).
#
# privatedev_start runs `bin/sagaflow dev` in the background with that
# environment, no OTEL_* variable of the caller's (so nothing is exported
# unless VAR=value asks for it), VAR=value added, its output to LOG, and
# waits until GET /readyz answers 200 (at most 2 minutes); it sets
# privatedev_pid. privatedev_stop stops it (SIGTERM, then waits).
# privatedev_cleanup stops whatever privatedev_start started, deletes the
# virtual host, drops the database and removes DATA; it does only what
# privatedev_setup got to, so it is safe in an EXIT trap set before it.
#
# The caller provides ROOT (the repository, also the current directory),
# log MESSAGE and die MESSAGE (which exits); curl and psql must be there.

privatedev_name='' privatedev_data='' privatedev_url='' privatedev_pprof='' privatedev_pid=''
privatedev_port_base='' privatedev_redis_db='' privatedev_mgmt='' privatedev_db_url=''
privatedev_pids=()

# privatedev_setup NAME DATA PORT_BASE REDIS_DB [OFFSET ...]: see above.
privatedev_setup() {
  local name=$1 data=$2 port_base=$3 redis_db=$4 p
  shift 4
  if ! [[ $port_base =~ ^[1-9][0-9]*$ ]] || [ "$port_base" -gt 65000 ]; then die "PORT_BASE=$port_base: want a port <= 65000"; fi
  [[ $redis_db =~ ^[0-9]+$ ]] || die "REDIS_DB=$redis_db: want a Redis database number"
  for p in curl psql; do command -v $p >/dev/null 2>&1 || die "$p not found"; done
  eval "$(deploy/stack.sh env)"
  privatedev_port_base=$port_base
  privatedev_redis_db=$redis_db
  privatedev_url=http://127.0.0.1:$((port_base + 80))
  privatedev_pprof=127.0.0.1:$((port_base + 60))
  for p in 80 233 60 91 92 93 94 95 "$@"; do
    (: </dev/tcp/127.0.0.1/$((port_base + p))) 2>/dev/null && die "port $((port_base + p)) is taken; set PORT_BASE"
  done

  log "building bin/sagaflow"
  mkdir -p bin
  go build -o bin/sagaflow ./cmd/sagaflow

  privatedev_mgmt=${RABBITMQ_MANAGEMENT_URL%/}
  privatedev_db_url=$(printf '%s' "$DATABASE_URL" | sed -E "s#/[^/?]+(\?|$)#/$name\1#")
  local amqp_user
  amqp_user=$(printf '%s' "$AMQP_URL" | sed -E 's#^amqp://([^:]*):.*#\1#')
  privatedev_name=$name
  psql -q "$DATABASE_URL" -c "CREATE DATABASE $name" || die "cannot create database $name"
  curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' -d '{}' "$privatedev_mgmt/api/vhosts/$name" ||
    die "cannot create vhost $name"
  curl -fsS -o /dev/null -X PUT -H 'content-type: application/json' -d '{"configure":".*","write":".*","read":".*"}' \
    "$privatedev_mgmt/api/permissions/$name/$amqp_user" || die "cannot grant vhost $name to $amqp_user"
  privatedev_data=$data
  mkdir -p "$privatedev_data"
}

# privatedev_start LOG [VAR=value ...]: see above.
privatedev_start() {
  local out=$1 base=$privatedev_port_base
  shift
  env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT -u OTEL_TRACES_SAMPLER \
    DATABASE_URL="$privatedev_db_url" AMQP_URL="${AMQP_URL%/}/$privatedev_name" REDIS_URL="${REDIS_URL%/*}/$privatedev_redis_db" \
    SAGAFLOW_DATA_DIR="$privatedev_data" SAGAFLOW_HTTP_ADDR="${privatedev_url#http://}" SAGAFLOW_PPROF_ADDR="$privatedev_pprof" \
    SAGAFLOW_DEV_TEMPORAL_PORT=$((base + 233)) SAGAFLOW_DEV_UI_PORT=0 \
    SAGAFLOW_SIM_PAYMENT_ADDR=127.0.0.1:$((base + 91)) SAGAFLOW_SIM_NOTIFY_ADDR=127.0.0.1:$((base + 92)) \
    SAGAFLOW_SIM_SHOPWAVE_ADDR=127.0.0.1:$((base + 93)) SAGAFLOW_SIM_SOUK_ADDR=127.0.0.1:$((base + 94)) \
    SAGAFLOW_SIM_BAZAAR_ADDR=127.0.0.1:$((base + 95)) \
    "$@" bin/sagaflow dev >"$out" 2>&1 &
  privatedev_pid=$!
  privatedev_pids+=("$privatedev_pid")
  for _ in $(seq 1 600); do
    curl -fsS -o /dev/null --max-time 2 "$privatedev_url/readyz" 2>/dev/null && return 0
    kill -0 "$privatedev_pid" 2>/dev/null || die "sagaflow dev exited: $(tail -n 5 "$out")"
    sleep 0.2
  done
  die "sagaflow dev not ready at $privatedev_url after 2 minutes (log: $out)"
}

# privatedev_stop: stop the sagaflow dev privatedev_start started last.
privatedev_stop() {
  [ -n "$privatedev_pid" ] || return 0
  kill "$privatedev_pid" 2>/dev/null || true
  wait "$privatedev_pid" 2>/dev/null || true
  privatedev_pid=
}

# privatedev_cleanup: see above.
privatedev_cleanup() {
  local p
  for p in "${privatedev_pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${privatedev_pids[@]}"; do wait "$p" 2>/dev/null || true; done
  privatedev_pids=() privatedev_pid=
  if [ -n "$privatedev_name" ]; then
    curl -fsS -o /dev/null -X DELETE "$privatedev_mgmt/api/vhosts/$privatedev_name" 2>/dev/null || true
    psql -q "$DATABASE_URL" -c "DROP DATABASE IF EXISTS $privatedev_name WITH (FORCE)" 2>/dev/null || true
    privatedev_name=
  fi
  if [ -n "$privatedev_data" ]; then
    rm -rf "$privatedev_data"
    privatedev_data=
  fi
}
