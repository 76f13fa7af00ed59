#!/usr/bin/env bash
# cluster.sh — what production looks like, on one machine: a Temporal server
# of its own on PostgreSQL, two API processes, two worker processes, the Web
# UI and the simulators, on the services of deploy/stack.sh. Nothing but Go
# and Debian packages.
#
#   deploy/cluster.sh up            build, apply Temporal's schemas, start everything (make cluster)
#   deploy/cluster.sh down          stop everything it started (make cluster-down); the stack stays
#   deploy/cluster.sh status        each process: pid, restarts, port
#   deploy/cluster.sh env           what a client of the cluster exports (eval "$(deploy/cluster.sh env)")
#   deploy/cluster.sh kill NAME     kill -9 NAME; its supervisor starts it again (fault runs)
#   deploy/cluster.sh stop NAME     stop NAME and keep it stopped
#   deploy/cluster.sh start NAME    start NAME again
#   deploy/cluster.sh restart NAME  stop, then start
#   deploy/cluster.sh rabbitmqctl ARGS  rabbitmqctl against the cluster's RabbitMQ nodes
#
# NAME is one of: temporal ui sim api1 api2 worker1 worker2, and rabbit1
# rabbit2 rabbit3 when the cluster has its own RabbitMQ nodes.
#
# The Temporal server is go.temporal.io/server's own cmd/server, built from
# this module (so it is the version the embedding uses, go.mod's tool
# directive), with persistence and visibility on PostgreSQL through the
# postgres12_pgx plugin, in the databases temporal and temporal_visibility of
# the stack's PostgreSQL; their schemas are applied by Temporal's own
# temporal-sql-tool from the versioned schema directories in the module.
# numHistoryShards is TEMPORAL_SHARDS (default 16 here; production values in
# deploy/k8s/values use 512); it can never change once the schema exists, so
# a different value is refused until `deploy/cluster.sh down --purge`.
#
# Every process runs under a supervisor loop (no systemd): when it dies, it
# is started again a second later. Logs and pid files are under .data/cluster/.
#
# Ports (all on 127.0.0.1):
#   temporal  7233 frontend gRPC (7243 HTTP), 7234 history, 7235 matching,
#             7239 worker, 6933-6939 membership, 8000 server metrics
#   ui        8233 Temporal Web UI
#   api1/2    8080 / 8081 REST API, /metrics
#   worker1/2 9091 / 9092 /healthz, /readyz, /metrics
#   pprof     6061 / 6062 api1 / api2, 6063 / 6064 worker1 / worker2
#             (net/http/pprof, for profiling the benchmarks' ceilings),
#             6065 the Temporal server's
#   sim       8091 payment, 8092 notify, 8093 shopwave, 8094 souk, 8095 bazaar
#   rabbitN   5680N AMQP, 5681N Erlang distribution, 56850 their epmd
#             (only with CLUSTER_RABBITMQ_NODES=3)
#
# RabbitMQ: by default the cluster uses the stack's one node. With
# CLUSTER_RABBITMQ_NODES=3 (make test-cluster sets it) it runs three private
# nodes of its own, rabbit1..3@localhost, clustered through classic config
# peer discovery, with their data under .data/cluster/rabbitN/. Every quorum
# queue has a member on all three (the script grows the queues once the
# workers have declared them). internal/rabbit dials one AMQP_URL, so api1
# and worker1 talk to rabbit1, api2 and worker2 to rabbit2, and rabbit3
# holds replicas only; a node killed takes its clients' connections with
# it until its supervisor has started it again, while the other half of
# the processes carries on. `deploy/cluster.sh rabbitmqctl ARGS` runs
# rabbitmqctl against rabbit1 with the nodes' environment.
#
# Environment: TEMPORAL_SHARDS (16), and anything sagaflow reads (see
# `bin/sagaflow --help`), passed on to every sagaflow process. The processes
# run with SAGAFLOW_ENV=dev because the markets are the local simulators at
# http:// addresses, which production refuses; the tenants demo and acme are
# seeded with the dev keys (demo-key, acme-key).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
DIR=$ROOT/.data/cluster
BIN=$ROOT/bin
SHARDS=${TEMPORAL_SHARDS:-16}
# set_rabbits N: the cluster runs N RabbitMQ nodes of its own (0 or 3).
set_rabbits() {
  case $1 in 0 | 3) ;; *) echo "cluster: CLUSTER_RABBITMQ_NODES is 0 or 3, not $1" >&2; exit 2 ;; esac
  RABBIT_NODES=$1
  local i
  RABBITS=()
  for ((i = 1; i <= RABBIT_NODES; i++)); do RABBITS+=("rabbit$i"); done
  SERVICES=("${RABBITS[@]}" temporal ui sim worker1 worker2 api1 api2)
}
# up reads CLUSTER_RABBITMQ_NODES (default 0); the other commands act on
# what up chose.
set_rabbits "$(cat "$DIR/rabbitmq_nodes" 2>/dev/null || echo 0)"
RABBIT_HOME=$DIR/rabbitmq
EPMD_PORT=56850

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
  log "$*"
  exit 1
}

# alive PID: the process runs and is not a zombie (these machines reap late).
alive() {
  [ -n "${1:-}" ] && [ -r "/proc/$1/stat" ] || return 1
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [ "$state" != Z ]
}

pid_of() { cat "$DIR/$1.pid" 2>/dev/null || true; }
supervisor_of() { cat "$DIR/$1.supervisor" 2>/dev/null || true; }

# wait_http URL SECONDS: GET URL answers 200 within SECONDS.
wait_http() {
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    curl -fsS -o /dev/null --max-time 2 "$1" 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

# wait_port PORT SECONDS: something listens on 127.0.0.1:PORT.
wait_port() {
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.2
  done
  return 1
}

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The stack's PostgreSQL, as the parts Temporal's config and tool take.
stack_env() {
  eval "$(deploy/stack.sh env)"
  local u=${DATABASE_URL#postgres://}
  PG_USER=${u%%:*}
  u=${u#*:}
  PG_PASSWORD=${u%%@*}
  u=${u#*@}
  PG_HOST=${u%%:*}
  u=${u#*:}
  PG_PORT=${u%%/*}
}

# cluster_env: what every process of the cluster reads.
cluster_env() {
  eval "$(deploy/stack.sh env)"
  [ "$RABBIT_NODES" = 3 ] && AMQP_URL=$(amqp_of 1)
  export TEMPORAL_ADDRESS=127.0.0.1:7233 SAGAFLOW_ENV=dev SAGAFLOW_UI_ADDR=127.0.0.1:8233
  # The server is on this machine: compressing each request and answer
  # would only spend the cores they share (the SDK gzips by default).
  export TEMPORAL_GRPC_COMPRESSION=none
  export SAGAFLOW_TEMPORAL_UI_URL=${SAGAFLOW_TEMPORAL_UI_URL:-http://127.0.0.1:8233}
}

# amqp_of N: the AMQP URL of rabbit node N, or the stack's when the cluster
# has no nodes of its own (empty where the stack's environment is not read:
# `down` only checks the names it stops).
amqp_of() {
  if [ "$RABBIT_NODES" = 0 ]; then echo "${AMQP_URL:-}"; else echo "amqp://guest:guest@127.0.0.1:$((56800 + $1))/"; fi
}

# rabbit_env N: the environment of rabbit node N (and of rabbitmqctl
# talking to it), as export lines: everything private, nothing read from
# /etc/rabbitmq.
rabbit_env() {
  cat <<ENV
export HOME='$RABBIT_HOME'
export RABBITMQ_NODENAME='rabbit$1@localhost'
export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
export RABBITMQ_NODE_PORT=$((56800 + $1))
export RABBITMQ_DIST_PORT=$((56810 + $1))
export RABBITMQ_MNESIA_BASE='$DIR/rabbit$1/mnesia'
export RABBITMQ_LOG_BASE='$DIR/rabbit$1/log'
export RABBITMQ_CONFIG_FILE='$DIR/rabbit$1/rabbitmq.conf'
export RABBITMQ_ENABLED_PLUGINS_FILE='$RABBIT_HOME/enabled_plugins'
export RABBITMQ_PID_FILE='$DIR/rabbit$1/beam.pid'
export RABBITMQ_CONF_ENV_FILE='$RABBIT_HOME/rabbitmq-env.conf'
export ERL_EPMD_PORT=$EPMD_PORT
export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-kernel inet_dist_use_interface {127,0,0,1}'
ENV
}

rabbitctl() { (eval "$(rabbit_env 1)" && /usr/lib/rabbitmq/bin/rabbitmqctl "$@"); }

# write_rabbit N: node N's config and the script its supervisor runs.
write_rabbit() {
  mkdir -p "$RABBIT_HOME" "$DIR/rabbit$1/log" "$DIR/rabbit$1/mnesia"
  echo '[].' >"$RABBIT_HOME/enabled_plugins"
  : >"$RABBIT_HOME/rabbitmq-env.conf"
  cat >"$DIR/rabbit$1/rabbitmq.conf" <<CONF
# Written by deploy/cluster.sh.
listeners.tcp.default = 127.0.0.1:$((56800 + $1))
loopback_users = none
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = rabbit1@localhost
cluster_formation.classic_config.nodes.2 = rabbit2@localhost
cluster_formation.classic_config.nodes.3 = rabbit3@localhost
CONF
  {
    echo '#!/usr/bin/env bash'
    echo "# Written by deploy/cluster.sh: rabbit$1 in the foreground."
    rabbit_env "$1"
    echo 'exec /usr/lib/rabbitmq/bin/rabbitmq-server'
  } >"$DIR/rabbit$1.sh"
  chmod +x "$DIR/rabbit$1.sh"
}

# command_of NAME: the command line NAME runs, with its own environment.
command_of() {
  case $1 in
    rabbit[123]) [ "${1#rabbit}" -le "$RABBIT_NODES" ] || die "no process named $1 (one of: ${SERVICES[*]})"; echo "$DIR/$1.sh" ;;
    temporal) echo "$BIN/temporal-server --config-file $DIR/temporal.yaml --allow-no-auth start" ;;
    ui) echo "$BIN/sagaflow ui" ;;
    sim) echo "$BIN/sagaflow sim" ;;
    api1) echo "env SAGAFLOW_HTTP_ADDR=127.0.0.1:8080 SAGAFLOW_PPROF_ADDR=127.0.0.1:6061 AMQP_URL=$(amqp_of 1) $BIN/sagaflow api" ;;
    api2) echo "env SAGAFLOW_HTTP_ADDR=127.0.0.1:8081 SAGAFLOW_PPROF_ADDR=127.0.0.1:6062 AMQP_URL=$(amqp_of 2) $BIN/sagaflow api" ;;
    worker1) echo "env SAGAFLOW_WORKER_HTTP_ADDR=127.0.0.1:9091 SAGAFLOW_PPROF_ADDR=127.0.0.1:6063 AMQP_URL=$(amqp_of 1) $BIN/sagaflow worker" ;;
    worker2) echo "env SAGAFLOW_WORKER_HTTP_ADDR=127.0.0.1:9092 SAGAFLOW_PPROF_ADDR=127.0.0.1:6064 AMQP_URL=$(amqp_of 2) $BIN/sagaflow worker" ;;
    *) die "no process named $1 (one of: ${SERVICES[*]})" ;;
  esac
}

# health_of NAME: the URL that answers 200 when NAME is up, or a port.
health_of() {
  case $1 in
    rabbit[123]) echo "port $((56800 + ${1#rabbit}))" ;;
    temporal) echo "port 7233" ;;
    ui) echo "http://127.0.0.1:8233/" ;;
    sim) echo "port 8095" ;;
    api1) echo "http://127.0.0.1:8080/readyz" ;;
    api2) echo "http://127.0.0.1:8081/readyz" ;;
    worker1) echo "http://127.0.0.1:9091/healthz" ;;
    worker2) echo "http://127.0.0.1:9092/healthz" ;;
  esac
}

wait_up() {
  local h
  h=$(health_of "$1")
  case $h in
    port\ *) wait_port "${h#port }" "$2" ;;
    *) wait_http "$h" "$2" ;;
  esac
}

# start NAME: NAME under a supervisor loop, which starts it again a second
# after it dies, until NAME.stop exists.
start() {
  local name=$1 cmd
  cmd=$(command_of "$name")
  alive "$(supervisor_of "$name")" && return 0
  rm -f "$DIR/$name.stop"
  # shellcheck disable=SC2016 # expanded by the supervisor's shell
  setsid bash -c '
    name=$1 dir=$2 cmd=$3
    restarts=0
    while [ ! -e "$dir/$name.stop" ]; do
      $cmd >>"$dir/$name.log" 2>&1 &
      echo $! >"$dir/$name.pid"
      echo "$restarts" >"$dir/$name.restarts"
      rc=0
      wait $! || rc=$?
      echo "$(date -u +%FT%TZ) cluster: $name exited with status $rc" >>"$dir/$name.log"
      [ -e "$dir/$name.stop" ] && break
      restarts=$((restarts + 1))
      sleep 1
    done
    rm -f "$dir/$name.pid"' _ "$name" "$DIR" "$cmd" </dev/null >/dev/null 2>&1 &
  echo $! >"$DIR/$name.supervisor"
}

# stop NAME: ask NAME to stop (SIGTERM: sagaflow drains within
# SAGAFLOW_SHUTDOWN_TIMEOUT, 30 s), SIGKILL after 40 s, and end its supervisor.
stop() {
  local name=$1 pid sup i
  command_of "$name" >/dev/null
  touch "$DIR/$name.stop"
  pid=$(pid_of "$name")
  sup=$(supervisor_of "$name")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 200; i++)); do
      alive "$pid" || break
      sleep 0.2
    done
    alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
  fi
  for ((i = 0; i < 25; i++)); do
    alive "$sup" || break
    sleep 0.2
  done
  alive "$sup" && kill -KILL "$sup" 2>/dev/null || true
  rm -f "$DIR/$name.supervisor" "$DIR/$name.pid"
}

write_config() {
  cat >"$DIR/temporal.yaml" <<EOF
# Written by deploy/cluster.sh; edit the script, not this file.
log:
  stdout: true
  level: warn
persistence:
  defaultStore: default
  visibilityStore: visibility
  numHistoryShards: $SHARDS
  datastores:
    default:
      sql:
        pluginName: postgres12_pgx
        databaseName: temporal
        connectAddr: "$PG_HOST:$PG_PORT"
        connectProtocol: tcp
        user: "$PG_USER"
        password: "$PG_PASSWORD"
        maxConns: 20
        maxIdleConns: 20
        maxConnLifetime: 1h
    visibility:
      sql:
        pluginName: postgres12_pgx
        databaseName: temporal_visibility
        connectAddr: "$PG_HOST:$PG_PORT"
        connectProtocol: tcp
        user: "$PG_USER"
        password: "$PG_PASSWORD"
        maxConns: 10
        maxIdleConns: 10
        maxConnLifetime: 1h
global:
  membership:
    maxJoinDuration: 30s
    broadcastAddress: 127.0.0.1
  pprof:
    port: 6065
    host: 127.0.0.1
  metrics:
    prometheus:
      framework: tally
      timerType: histogram
      listenAddress: 127.0.0.1:8000
services:
  frontend:
    rpc: { grpcPort: 7233, membershipPort: 6933, bindOnLocalHost: true, httpPort: 7243 }
  matching:
    rpc: { grpcPort: 7235, membershipPort: 6935, bindOnLocalHost: true }
  history:
    rpc: { grpcPort: 7234, membershipPort: 6934, bindOnLocalHost: true }
  worker:
    rpc: { grpcPort: 7239, membershipPort: 6939, bindOnLocalHost: true }
clusterMetadata:
  enableGlobalNamespace: false
  failoverVersionIncrement: 10
  masterClusterName: active
  currentClusterName: active
  clusterInformation:
    active:
      enabled: true
      initialFailoverVersion: 1
      rpcName: frontend
      rpcAddress: 127.0.0.1:7233
      httpAddress: 127.0.0.1:7243
dcRedirectionPolicy:
  policy: noop
archival:
  history: { state: disabled }
  visibility: { state: disabled }
namespaceDefaults:
  archival:
    history: { state: disabled }
    visibility: { state: disabled }
dynamicConfigClient:
  filepath: $DIR/dynamicconfig.yaml
  pollInterval: 10s
EOF
  cat >"$DIR/dynamicconfig.yaml" <<'EOF'
# Written by deploy/cluster.sh. Temporal's defaults, as in production; the
# one set here says so for the setting that must never be on there: it
# reads the search attributes from PostgreSQL, under one lock, on every
# use (each start, each visibility write). When sagaflow migrate adds a
# search attribute, deploy/cluster.sh restarts the server instead, so that
# every service reads it at once.
system.forceSearchAttributesCacheRefreshOnRead:
  - value: false
EOF
}

# schema DB DIR: create DB and bring it to the newest version of Temporal's
# versioned schema in DIR (idempotent: update-schema skips applied versions).
schema() {
  local sqltool=("$BIN/temporal-sql-tool" --plugin postgres12_pgx --ep "$PG_HOST" -p "$PG_PORT" -u "$PG_USER" --pw "$PG_PASSWORD" --db "$1")
  "${sqltool[@]}" create-database >>"$DIR/schema.log" 2>&1 || true # exists after the first up
  "${sqltool[@]}" setup-schema -v 0.0 >>"$DIR/schema.log" 2>&1 || true # likewise
  "${sqltool[@]}" update-schema -d "$2" >>"$DIR/schema.log" 2>&1 || die "update-schema of $1 failed: $(tail -n 5 "$DIR/schema.log")"
}

# start_temporal: the Temporal server, then a wait until it listens.
start_temporal() {
  start temporal
  wait_up temporal 60 || die "the Temporal server does not listen on 7233 after 60 s: $(tail -n 20 "$DIR/temporal.log")"
}

up() {
  mkdir -p "$DIR"
  if [ -f "$DIR/shards" ] && [ "$(cat "$DIR/shards")" != "$SHARDS" ]; then
    die "the schema was created with $(cat "$DIR/shards") history shards, TEMPORAL_SHARDS=$SHARDS; a shard count never changes: 'deploy/cluster.sh down --purge' drops the Temporal databases first"
  fi
  for name in "${SERVICES[@]}"; do
    alive "$(supervisor_of "$name")" && die "$name runs already (deploy/cluster.sh status; down first)"
  done
  local rabbit_ports=()
  [ "$RABBIT_NODES" = 3 ] && rabbit_ports=(56801 56802 56803 56811 56812 56813 "$EPMD_PORT")
  for p in 7233 7234 7235 7239 7243 6933 6934 6935 6939 8000 8233 8080 8081 9091 9092 6061 6062 6063 6064 6065 8091 8092 8093 8094 8095 "${rabbit_ports[@]}"; do
    port_taken "$p" && die "port $p is taken (is 'make run' running?); stop it first"
  done
  deploy/stack.sh up
  stack_env
  log "building bin/sagaflow, bin/temporal-server and bin/temporal-sql-tool"
  go build -o "$BIN/sagaflow" ./cmd/sagaflow
  go build -o "$BIN/temporal-server" go.temporal.io/server/cmd/server
  go build -o "$BIN/temporal-sql-tool" go.temporal.io/server/cmd/tools/sql
  local schemas
  schemas=$(go list -m -f '{{.Dir}}' go.temporal.io/server)/schema/postgresql/v12
  log "Temporal schemas ($SHARDS history shards) into temporal and temporal_visibility"
  schema temporal "$schemas/temporal/versioned"
  schema temporal_visibility "$schemas/visibility/versioned"
  echo "$SHARDS" >"$DIR/shards"
  write_config

  cluster_env
  if [ "$RABBIT_NODES" = 3 ]; then
    rabbit_up
  else
    rm -f "$DIR/rabbitmq_nodes"
  fi
  start_temporal
  log "migrating PostgreSQL, registering the namespace, seeding tenants demo and acme"
  local migrated
  migrated=$("$BIN/sagaflow" migrate --demo-tenants 2>&1) || { echo "$migrated" >>"$DIR/migrate.log"; die "sagaflow migrate failed: $(tail -n 10 "$DIR/migrate.log")"; }
  echo "$migrated" >>"$DIR/migrate.log"
  if grep -q 'search attributes added' <<<"$migrated"; then
    # Each Temporal service caches the search attributes for a minute:
    # a restart makes them read the new ones now, not a minute of refused
    # starts later.
    log "search attributes added: restarting the Temporal server so that every service knows them"
    stop temporal
    start_temporal
  fi
  for name in ui sim worker1 worker2 api1 api2; do
    start "$name"
  done
  for name in ui sim worker1 worker2 api1 api2; do
    wait_up "$name" 90 || die "$name is not up after 90 s: $(tail -n 20 "$DIR/$name.log")"
  done
  [ "$RABBIT_NODES" = 3 ] && rabbit_replicate
  status
  cat <<EOF

  what production looks like, on this machine:
    REST API     http://127.0.0.1:8080 and http://127.0.0.1:8081 (same data, either one)
    Temporal UI  http://127.0.0.1:8233/namespaces/sagaflow/workflows
    logs         $DIR/<name>.log
    try          curl -s -X POST -H 'Authorization: Bearer demo-key' http://127.0.0.1:8081/v1/probes
    faults       deploy/cluster.sh kill worker1   (its supervisor starts it again)
    stop         make cluster-down
EOF
}

# rabbit_up: the three nodes, rabbit1 first (the others join it through
# classic config peer discovery), then a check that they form one cluster.
rabbit_up() {
  local i
  for i in 1 2 3; do write_rabbit "$i"; done
  echo 3 >"$DIR/rabbitmq_nodes"
  (eval "$(rabbit_env 1)" && epmd -port "$EPMD_PORT" -address 127.0.0.1 -daemon)
  start rabbit1
  wait_up rabbit1 90 || die "rabbit1 is not up after 90 s: $(tail -n 20 "$DIR/rabbit1.log")"
  start rabbit2
  start rabbit3
  for i in 2 3; do
    wait_up "rabbit$i" 90 || die "rabbit$i is not up after 90 s: $(tail -n 20 "$DIR/rabbit$i.log")"
  done
  for ((i = 0; i < 60; i++)); do
    [ "$(rabbitctl cluster_status --formatter json 2>/dev/null | jq '.running_nodes | length')" = 3 ] && break
    sleep 1
  done
  [ "$i" -lt 60 ] || die "the three RabbitMQ nodes do not form one cluster: $(rabbitctl cluster_status 2>&1 | tail -n 20)"
  log "rabbitmq: rabbit1..3@localhost clustered on 56801-56803"
}

# rabbit_replicate: a member of every quorum queue on every node (the
# queues exist once the workers have declared them).
rabbit_replicate() {
  local i
  for i in 1 2 3; do
    (eval "$(rabbit_env 1)" && /usr/lib/rabbitmq/bin/rabbitmq-queues grow "rabbit$i@localhost" all >>"$DIR/rabbitmq-grow.log" 2>&1) \
      || die "rabbitmq-queues grow rabbit$i failed: $(tail -n 5 "$DIR/rabbitmq-grow.log")"
  done
  log "rabbitmq: quorum queues: $(rabbitctl list_queues -q name type members --formatter json 2>/dev/null |
    jq -r '[.[] | select(.type == "quorum") | (.members | length)] | "\(length) queues, members per queue \(unique)"')"
}

down() {
  local name
  mkdir -p "$DIR"
  for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do
    name=${SERVICES[$i]}
    if alive "$(supervisor_of "$name")" || alive "$(pid_of "$name")"; then
      log "stopping $name"
      stop "$name"
    fi
  done
  if [ "$RABBIT_NODES" = 3 ]; then
    (eval "$(rabbit_env 1)" && epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true)
  fi
  if [ "${1:-}" = --purge ]; then
    rm -rf "$DIR"/rabbit[123] "$DIR/rabbitmq" "$DIR/rabbitmq_nodes"
    stack_env
    for db in temporal temporal_visibility; do
      [ -x "$BIN/temporal-sql-tool" ] && "$BIN/temporal-sql-tool" --plugin postgres12_pgx --ep "$PG_HOST" -p "$PG_PORT" \
        -u "$PG_USER" --pw "$PG_PASSWORD" --db "$db" drop-database -f >>"$DIR/schema.log" 2>&1 || true
    done
    rm -f "$DIR/shards"
    log "dropped the Temporal databases"
  fi
}

status() {
  local name pid state
  printf '%-9s %-8s %-9s %s\n' NAME PID RESTARTS HEALTH
  for name in "${SERVICES[@]}"; do
    pid=$(pid_of "$name")
    if alive "$pid"; then
      if wait_up "$name" 1; then state="up ($(health_of "$name"))"; else state="starting ($(health_of "$name"))"; fi
    elif alive "$(supervisor_of "$name")"; then
      pid=-
      state=restarting
    else
      pid=-
      state=stopped
    fi
    printf '%-9s %-8s %-9s %s\n' "$name" "$pid" "$(cat "$DIR/$name.restarts" 2>/dev/null || echo 0)" "$state"
  done
}

case ${1:-} in
  up)
    set_rabbits "${CLUSTER_RABBITMQ_NODES:-0}"
    up
    ;;
  down) down "${2:-}" ;;
  status) status ;;
  env)
    deploy/stack.sh env
    echo "export TEMPORAL_ADDRESS='127.0.0.1:7233'"
    echo "export TEMPORAL_GRPC_COMPRESSION='none'"
    echo "export SAGAFLOW_CLUSTER_RABBITMQ_NODES='$RABBIT_NODES'"
    echo "export SAGAFLOW_CLUSTER_API_URLS='http://127.0.0.1:8080 http://127.0.0.1:8081'"
    ;;
  kill)
    [ -n "${2:-}" ] || die "kill NAME"
    command_of "$2" >/dev/null
    pid=$(pid_of "$2")
    alive "$pid" || die "$2 is not running"
    case $2 in
      rabbit[123]) # the node is the Erlang VM the script started, not the script
        beam=$(cat "$DIR/$2/beam.pid" 2>/dev/null || true)
        alive "$beam" && kill -KILL "$beam"
        ;;
    esac
    kill -KILL "$pid"
    log "killed $2 (pid $pid); its supervisor starts it again"
    ;;
  stop)
    [ -n "${2:-}" ] || die "stop NAME"
    stop "$2"
    ;;
  start)
    [ -n "${2:-}" ] || die "start NAME"
    mkdir -p "$DIR"
    cluster_env
    start "$2"
    wait_up "$2" 90 || die "$2 is not up after 90 s: $(tail -n 20 "$DIR/$2.log")"
    ;;
  rabbitmqctl)
    [ "$RABBIT_NODES" = 3 ] || die "the cluster runs no RabbitMQ nodes of its own (CLUSTER_RABBITMQ_NODES=3 deploy/cluster.sh up)"
    shift
    rabbitctl "$@"
    ;;
  restart)
    [ -n "${2:-}" ] || die "restart NAME"
    "$0" stop "$2"
    "$0" start "$2"
    ;;
  *)
    sed -n '2,/^set -euo pipefail$/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
