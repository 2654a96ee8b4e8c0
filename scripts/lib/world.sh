# Shared pieces of the demo world, sourced by scripts/setup, scripts/demo and scripts/test.
# Every process started here is recorded in WORLD_PIDS and stopped by stop_world.

PG_HOST=127.0.0.1
PG_PORT=5432
PG_ADMIN_URL="postgres://postgres@$PG_HOST:$PG_PORT"
WORLD_PIDS=()

log() { printf '\033[1m[%s]\033[0m %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until a URL answers 2xx, or fails after $2 seconds.
wait_http() {
  local url=$1 limit=${2:-60} i
  for ((i = 0; i < limit * 4; i++)); do
    curl -fsS -o /dev/null --max-time 2 "$url" 2>/dev/null && return 0
    sleep 0.25
  done
  die "$url did not answer within ${limit}s"
}

# A PostgreSQL server on 127.0.0.1:5432: use the one that answers, else start (or install) one.
ensure_postgres() {
  pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null && return 0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    log "installing PostgreSQL from Debian"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    local hba
    hba=$(ls /etc/postgresql/*/main/pg_hba.conf | head -1)
    # Trust local loopback connections, as on the machines this project is developed on.
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -1)
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || pg_ctlcluster "$version" main start
  local i
  for ((i = 0; i < 60; i++)); do pg_isready -q -h "$PG_HOST" -p "$PG_PORT" && return 0; sleep 0.5; done
  die "PostgreSQL did not start"
}

db_exists() {
  [[ "$(psql "$PG_ADMIN_URL/postgres" -tAc "SELECT 1 FROM pg_database WHERE datname = '$1'")" == 1 ]]
}
ensure_db() { db_exists "$1" || psql -q "$PG_ADMIN_URL/postgres" -c "CREATE DATABASE \"$1\"" >/dev/null; }
recreate_db() {
  psql -q "$PG_ADMIN_URL/postgres" -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null
  psql -q "$PG_ADMIN_URL/postgres" -c "CREATE DATABASE \"$1\"" >/dev/null
}

# Runs the demo diary service's Alembic (demo/services/api) against database URL $1.
alembic_diary() {
  local url=$1; shift
  (cd demo/services/api && DATABASE_URL="$url" ../../.venv/bin/alembic -c alembic/alembic.ini "$@")
}

# start_bg NAME LOGFILE CMD...: starts a process, records its pid.
start_bg() {
  local name=$1 logfile=$2; shift 2
  "$@" >"$logfile" 2>&1 &
  local pid=$!
  WORLD_PIDS+=("$pid")
  eval "${name}_PID=$pid"
  log "started $name (pid $pid, log $logfile)"
}

stop_world() {
  local pid
  for pid in "${WORLD_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${WORLD_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  WORLD_PIDS=()
}

# write_prometheus_config FILE RULES SCRAPE_TARGET(optional) ALERTMANAGER(optional host:port) JOIN(optional)
# JOIN "join" (the default) drops job/instance so that the scraped counters continue the
# backfilled series; "apart" keeps them, so the live series sit beside the backfilled ones (and
# lets samples in behind a backfill that runs into the future).
write_prometheus_config() {
  local file=$1 rules=$2 target=${3:-} alertmanager=${4:-} join=${5:-join}
  {
    echo "global: {scrape_interval: 5s, evaluation_interval: 5s}"
    echo "rule_files: ['$rules']"
    if [[ -n "$alertmanager" ]]; then
      echo "alerting: {alertmanagers: [{static_configs: [{targets: ['$alertmanager']}]}]}"
    fi
    if [[ -n "$target" ]]; then
      cat <<YAML
scrape_configs:
  - job_name: diary-writer
    scrape_interval: 5s
    static_configs: [{targets: ['$target']}]
YAML
      if [[ "$join" == join ]]; then
        echo "    # One continuous series with the backfilled history, which has no job/instance labels."
        echo "    metric_relabel_configs: [{action: labeldrop, regex: 'job|instance'}]"
      else
        # A backfill that runs into the future (synthetic constant history) sets the oldest time
        # Prometheus appends at beyond now: without an out-of-order window every scraped sample
        # would be refused as out of bounds.
        printf 'storage:\n  tsdb:\n    out_of_order_time_window: 3h\n'
      fi
    fi
  } >"$file"
}

# start_prometheus DATA_DIR CONFIG PORT LOGFILE [FLAG...]
start_prometheus() {
  local data=$1 config=$2 port=$3 logfile=$4
  shift 4
  start_bg PROMETHEUS "$logfile" prometheus --config.file="$config" --storage.tsdb.path="$data" \
    --storage.tsdb.retention.time=60d --web.listen-address="127.0.0.1:$port" --log.level=warn "$@"
  wait_http "http://127.0.0.1:$port/-/ready" 60
}

# write_alertmanager_config FILE HOOK_URL TOKEN_FILE: every alert from Prometheus goes to the
# dashboard's hook (bearer token read from TOKEN_FILE, so no secret is in the config); the
# dashboard's own alerts (source="rollout-dashboard") are held for people (a real setup routes
# them to a pager).
write_alertmanager_config() {
  local file=$1 hook=$2 token_file=$3
  cat >"$file" <<YAML
route:
  receiver: dashboard-hook
  group_by: [alertname]
  group_wait: 5s
  group_interval: 10s
  repeat_interval: 1h
  routes:
    - matchers: ['source="rollout-dashboard"']
      receiver: oncall
receivers:
  - name: oncall
  - name: dashboard-hook
    webhook_configs:
      - url: '$hook'
        send_resolved: false
        http_config: {authorization: {type: Bearer, credentials_file: '$token_file'}}
YAML
}

# start_alertmanager CONFIG DATA_DIR PORT LOGFILE (clustering off: one instance)
start_alertmanager() {
  local config=$1 data=$2 port=$3 logfile=$4
  start_bg ALERTMANAGER "$logfile" prometheus-alertmanager --config.file="$config" --storage.path="$data" \
    --web.listen-address="127.0.0.1:$port" --cluster.listen-address= --log.level=warn
  wait_http "http://127.0.0.1:$port/-/ready" 60
}

# random_secret FILE: a 32-hex-digit secret in FILE (mode 600), made once.
random_secret() {
  [[ -s "$1" ]] || (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$1")
}

# Backfills DATA_DIR from an OpenMetrics file (must run before Prometheus opens DATA_DIR).
backfill_prometheus() {
  local om=$1 data=$2
  mkdir -p "$data"
  promtool tsdb create-blocks-from openmetrics --max-block-duration=24h "$om" "$data" >/dev/null
}

# write_kubeconfig FILE SERVER_URL TOKEN
write_kubeconfig() {
  local file=$1 server=$2 token=$3
  (umask 077 && cat >"$file" <<YAML
apiVersion: v1
kind: Config
clusters:
  - name: demo
    cluster: {server: "$server"}
users:
  - name: demo
    user: {token: "$token"}
contexts:
  - name: demo
    context: {cluster: demo, user: demo, namespace: diabetes}
current-context: demo
YAML
  )
}
