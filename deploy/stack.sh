#!/usr/bin/env bash
# stack.sh — the project's own private PostgreSQL, Redis and RabbitMQ.
#
#   deploy/stack.sh up      install what is missing (Debian packages), start what is not running
#   deploy/stack.sh down    stop what this script started
#   deploy/stack.sh status  one line per service
#   deploy/stack.sh env     the connection URLs, as shell exports
#   deploy/stack.sh restart postgres|redis|rabbitmq
#                           stop one server gracefully and start it again (tests of restarts)
#   deploy/stack.sh stop postgres|redis|rabbitmq
#   deploy/stack.sh start postgres|redis|rabbitmq
#                           stop one server, or start it again (tests of outages)
#   deploy/stack.sh tool promtool
#                           print the path of promtool (make check-observability),
#                           fetching it first if there is none
#
# Each server runs as a private instance on its own loopback port with its
# data under .data/ (nothing is shared with a system-wide install, nothing
# needs systemd or Docker). Where DATABASE_URL, REDIS_URL or AMQP_URL is set,
# that service is left alone and the given server is used instead.
# Idempotent: "up" on a running stack only checks it (well under a second).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${SAGAFLOW_DATA_DIR:-$ROOT/.data}

PG_PORT=${SAGAFLOW_PG_PORT:-54320}
REDIS_PORT=${SAGAFLOW_REDIS_PORT:-63790}
AMQP_PORT=${SAGAFLOW_AMQP_PORT:-56720}
RABBIT_MGMT_PORT=${SAGAFLOW_RABBIT_MGMT_PORT:-56730}
RABBIT_DIST_PORT=${SAGAFLOW_RABBIT_DIST_PORT:-56740}
EPMD_PORT=${SAGAFLOW_EPMD_PORT:-56750}

PG_BIN=""
PG_DIR=$DATA/postgres
REDIS_DIR=$DATA/redis
RABBIT_DIR=$DATA/rabbitmq
RABBIT_NODE=sagaflow@localhost

log() { printf 'stack: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# running PIDFILE: the process named in PIDFILE exists and is not a zombie
# (zombies are reaped lazily on our machines, so kill -0 alone lies).
running() {
  local pid
  [ -s "$1" ] || return 1
  pid=$(head -n1 "$1" | tr -d '[:space:]')
  [ -n "$pid" ] && [ -r "/proc/$pid/stat" ] || return 1
  # field 3 of /proc/PID/stat is the state; the command in field 2 may hold spaces.
  local state
  state=$(sed -e 's/^.*) //' "/proc/$pid/stat" | cut -d' ' -f1)
  [ "$state" != "Z" ] && [ "$state" != "X" ]
}

wait_port() { # wait_port PORT SECONDS
  local i
  for ((i = 0; i < $2 * 10; i++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}

# ---------- installation ----------

need_pkgs=()

# find_pg_bin sets PG_BIN to the newest installed PostgreSQL's binaries.
find_pg_bin() {
  PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
}

check_installs() {
  if [ -z "${DATABASE_URL:-}" ]; then
    find_pg_bin
    [ -n "$PG_BIN" ] && [ -x "$PG_BIN/postgres" ] || need_pkgs+=(postgresql)
  fi
  if [ -z "${REDIS_URL:-}" ]; then
    command -v redis-server >/dev/null || need_pkgs+=(redis-server)
  fi
  if [ -z "${AMQP_URL:-}" ]; then
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need_pkgs+=(rabbitmq-server)
  fi
}

install_missing() {
  check_installs
  [ ${#need_pkgs[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing ${need_pkgs[*]}; run as root to install them, or set DATABASE_URL/REDIS_URL/AMQP_URL to servers you run"
  log "installing ${need_pkgs[*]} (Debian packages)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
  need_pkgs=()
  check_installs
  [ ${#need_pkgs[@]} -eq 0 ] || die "still missing after install: ${need_pkgs[*]}"
}

# ---------- tools ----------

# tool_promtool prints the path of a promtool: one on PATH, else the one
# taken out of Debian's prometheus package into $DATA/tools. Only the
# binary is extracted (apt-get download + dpkg-deb, no root needed): the
# package itself would install the Prometheus server with its init scripts
# and a dozen JavaScript packages, none of which a rules check needs, and
# nothing is left running.
tool_promtool() {
  local bin=$DATA/tools/bin/promtool
  if command -v promtool >/dev/null; then command -v promtool; return; fi
  if [ -x "$bin" ]; then echo "$bin"; return; fi
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  log "fetching promtool (Debian package prometheus, binary only)"
  (cd "$tmp" && apt-get download -qq prometheus >/dev/null 2>&1) ||
    { [ "$(id -u)" -eq 0 ] && apt-get update -qq >/dev/null && (cd "$tmp" && apt-get download -qq prometheus >/dev/null); } ||
    die "cannot download the Debian package prometheus"
  mkdir -p "$tmp/x" "$(dirname "$bin")"
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp/x" ./usr/bin/promtool
  install -m 0755 "$tmp/x/usr/bin/promtool" "$bin"
  echo "$bin"
}

# ---------- PostgreSQL ----------

# as_postgres runs a command as the postgres user from /, since the checkout
# may be a directory that user cannot enter.
as_postgres() { (cd / && runuser -u postgres -- "$@"); }

# PostgreSQL refuses to run as root, so the data directory belongs to the
# postgres user, and every parent must be searchable by it. Where the checkout
# sits below a private directory (/root is mode 700), the data lives in
# /var/lib/sagaflow/<hash of the checkout path> and .data/postgres links to it.
pg_datadir() {
  if [ -L "$PG_DIR" ]; then readlink -f "$PG_DIR"; return; fi
  if [ -d "$PG_DIR" ]; then echo "$PG_DIR"; return; fi
  mkdir -p "$DATA"
  if as_postgres test -x "$DATA"; then
    echo "$PG_DIR"
  else
    local alt
    alt=/var/lib/sagaflow/$(printf '%s' "$DATA" | sha1sum | cut -c1-12)/postgres
    mkdir -p "$(dirname "$alt")"
    chmod 755 /var/lib/sagaflow "$(dirname "$alt")"
    ln -sfn "$alt" "$PG_DIR"
    echo "$alt"
  fi
}

pg_up() {
  local dir
  dir=$(pg_datadir)
  if [ -s "$dir/postmaster.pid" ] && running "$dir/postmaster.pid" && wait_port "$PG_PORT" 1; then
    return 0
  fi
  if [ ! -s "$dir/PG_VERSION" ]; then
    log "postgres: initdb in $dir"
    mkdir -p "$dir"
    chown postgres: "$dir"
    chmod 700 "$dir"
    local pw
    pw=$(mktemp)
    echo sagaflow >"$pw"
    chown postgres: "$pw"
    as_postgres "$PG_BIN/initdb" -D "$dir" -U postgres --pwfile="$pw" \
      --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pw"
    cat >>"$dir/postgresql.conf" <<CONF
# sagaflow: a private instance on loopback, TCP only
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 300
shared_buffers = 256MB
CONF
  fi
  rm -f "$dir/postmaster.pid"
  as_postgres "$PG_BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null \
    || { tail -n 20 "$dir/server.log" >&2; die "postgres did not start"; }
  # The application role and database, created once.
  PGPASSWORD=sagaflow psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -qtA -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
SELECT 'CREATE ROLE sagaflow LOGIN CREATEDB PASSWORD ''sagaflow'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'sagaflow')\gexec
SELECT 'CREATE DATABASE sagaflow OWNER sagaflow'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'sagaflow')\gexec
SQL
  log "postgres: up on 127.0.0.1:$PG_PORT"
}

pg_down() {
  local dir
  [ -e "$PG_DIR" ] || return 0
  dir=$(readlink -f "$PG_DIR")
  running "$dir/postmaster.pid" 2>/dev/null || return 0
  as_postgres "$PG_BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null && log "postgres: stopped"
}

# ---------- Redis ----------

redis_up() {
  mkdir -p "$REDIS_DIR"
  if running "$REDIS_DIR/redis.pid" && redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    return 0
  fi
  # appendonly with fsync on every write: an accepted first-come request must
  # survive a crash of redis-server (see the coupon saga).
  cat >"$REDIS_DIR/redis.conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
daemonize yes
pidfile $REDIS_DIR/redis.pid
logfile $REDIS_DIR/redis.log
dir $REDIS_DIR
appendonly yes
appendfsync always
save ""
protected-mode yes
CONF
  rm -f "$REDIS_DIR/redis.pid"
  redis-server "$REDIS_DIR/redis.conf"
  wait_port "$REDIS_PORT" 20 || { tail -n 20 "$REDIS_DIR/redis.log" >&2; die "redis did not start"; }
  for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
  log "redis: up on 127.0.0.1:$REDIS_PORT"
}

redis_down() {
  running "$REDIS_DIR/redis.pid" 2>/dev/null || return 0
  redis-cli -p "$REDIS_PORT" shutdown >/dev/null 2>&1 || true
  log "redis: stopped"
}

# ---------- RabbitMQ ----------

rabbit_env() {
  export HOME=$RABBIT_DIR
  export RABBITMQ_NODENAME=$RABBIT_NODE
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT=$AMQP_PORT
  export RABBITMQ_DIST_PORT=$RABBIT_DIST_PORT
  export RABBITMQ_MNESIA_BASE=$RABBIT_DIR/mnesia
  export RABBITMQ_LOG_BASE=$RABBIT_DIR/log
  export RABBITMQ_CONFIG_FILE=$RABBIT_DIR/rabbitmq.conf
  export RABBITMQ_ENABLED_PLUGINS_FILE=$RABBIT_DIR/enabled_plugins
  export RABBITMQ_PID_FILE=$RABBIT_DIR/rabbitmq.pid
  export RABBITMQ_CONF_ENV_FILE=$RABBIT_DIR/rabbitmq-env.conf
  export ERL_EPMD_PORT=$EPMD_PORT
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

rabbitctl() { (rabbit_env; /usr/lib/rabbitmq/bin/rabbitmqctl "$@"); }

rabbit_up() {
  mkdir -p "$RABBIT_DIR/log" "$RABBIT_DIR/mnesia"
  if running "$RABBIT_DIR/rabbitmq.pid" && wait_port "$AMQP_PORT" 1; then
    return 0
  fi
  cat >"$RABBIT_DIR/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $RABBIT_MGMT_PORT
loopback_users = none
CONF
  echo '[rabbitmq_management].' >"$RABBIT_DIR/enabled_plugins"
  : >"$RABBIT_DIR/rabbitmq-env.conf"
  rm -f "$RABBIT_DIR/rabbitmq.pid"
  (
    rabbit_env
    # epmd is private to this node (its own port), started here so that it
    # outlives nothing but us; "down" stops it.
    epmd -port "$EPMD_PORT" -address 127.0.0.1 -daemon
    setsid /usr/lib/rabbitmq/bin/rabbitmq-server >"$RABBIT_DIR/log/stdout.log" 2>&1 </dev/null &
  )
  rabbitctl wait --timeout 90 "$RABBIT_DIR/rabbitmq.pid" >/dev/null 2>&1 \
    || { tail -n 30 "$RABBIT_DIR/log/stdout.log" >&2; die "rabbitmq did not start"; }
  wait_port "$RABBIT_MGMT_PORT" 30 || die "rabbitmq management did not start"
  log "rabbitmq: up on 127.0.0.1:$AMQP_PORT (management http://127.0.0.1:$RABBIT_MGMT_PORT)"
}

rabbit_down() {
  if running "$RABBIT_DIR/rabbitmq.pid" 2>/dev/null; then
    rabbitctl stop "$RABBIT_DIR/rabbitmq.pid" >/dev/null 2>&1 || true
    log "rabbitmq: stopped"
  fi
  (rabbit_env; epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true)
}

# ---------- commands ----------

print_env() {
  echo "export DATABASE_URL='${DATABASE_URL:-postgres://sagaflow:sagaflow@127.0.0.1:$PG_PORT/sagaflow?sslmode=disable}'"
  echo "export REDIS_URL='${REDIS_URL:-redis://127.0.0.1:$REDIS_PORT/0}'"
  echo "export AMQP_URL='${AMQP_URL:-amqp://guest:guest@127.0.0.1:$AMQP_PORT/}'"
  echo "export RABBITMQ_MANAGEMENT_URL='${RABBITMQ_MANAGEMENT_URL:-http://guest:guest@127.0.0.1:$RABBIT_MGMT_PORT}'"
}

up() {
  install_missing
  local pids=() rc=0
  [ -n "${DATABASE_URL:-}" ] || { pg_up & pids+=($!); }
  [ -n "${REDIS_URL:-}" ] || { redis_up & pids+=($!); }
  [ -n "${AMQP_URL:-}" ] || { rabbit_up & pids+=($!); }
  for p in "${pids[@]}"; do wait "$p" || rc=1; done
  return $rc
}

down() {
  check_installs || true
  [ -n "${DATABASE_URL:-}" ] || pg_down || true
  [ -n "${REDIS_URL:-}" ] || redis_down || true
  [ -n "${AMQP_URL:-}" ] || rabbit_down || true
}

status() {
  local dir=""
  [ -e "$PG_DIR" ] && dir=$(readlink -f "$PG_DIR")
  if [ -n "${DATABASE_URL:-}" ]; then echo "postgres: external ($DATABASE_URL)"
  elif [ -n "$dir" ] && running "$dir/postmaster.pid"; then echo "postgres: running on 127.0.0.1:$PG_PORT"
  else echo "postgres: stopped"; fi
  if [ -n "${REDIS_URL:-}" ]; then echo "redis: external ($REDIS_URL)"
  elif running "$REDIS_DIR/redis.pid"; then echo "redis: running on 127.0.0.1:$REDIS_PORT"
  else echo "redis: stopped"; fi
  if [ -n "${AMQP_URL:-}" ]; then echo "rabbitmq: external ($AMQP_URL)"
  elif running "$RABBIT_DIR/rabbitmq.pid"; then echo "rabbitmq: running on 127.0.0.1:$AMQP_PORT"
  else echo "rabbitmq: stopped"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) check_installs || true; status ;;
  env) print_env ;;
  tool)
    case "${2:-}" in
      promtool) tool_promtool ;;
      *) echo "usage: $0 tool promtool" >&2; exit 2 ;;
    esac ;;
  restart | stop | start)
    # These act on the private servers only, whatever DATABASE_URL & co say:
    # a test that calls them has checked that it runs against those.
    find_pg_bin
    case "$1:${2:-}" in
      restart:postgres) pg_down; pg_up ;;
      restart:redis) redis_down; redis_up ;;
      restart:rabbitmq) rabbit_down; rabbit_up ;;
      stop:postgres) pg_down ;;
      stop:redis) redis_down ;;
      stop:rabbitmq) rabbit_down ;;
      start:postgres) pg_up ;;
      start:redis) redis_up ;;
      start:rabbitmq) rabbit_up ;;
      *) echo "usage: $0 $1 postgres|redis|rabbitmq" >&2; exit 2 ;;
    esac ;;
  *) echo "usage: $0 up|down|status|env|tool NAME|restart|stop|start SERVICE" >&2; exit 2 ;;
esac
