#!/usr/bin/env bash
# Local infrastructure for Millrace without a Docker engine.
#
#   deps.sh up             make every dependency answer (reuse what already answers)
#   deps.sh down           stop only what this script started (markers in .run/deps/)
#   deps.sh stop NAME      stop one dependency, even the machine's own (tests, chaos)
#   deps.sh start NAME     start one dependency and wait until it answers
#   deps.sh status         one line per dependency
#
# NAME is one of: postgres redis rabbitmq influxdb
# Hosts and ports come from .run/env (created by env.sh when missing).
#
# The MQTT edge is RabbitMQ's own MQTT listener (plugin rabbitmq_mqtt on MQTT_PORT) with
# gateways authenticated and authorised by the auth service (rabbitmq_auth_backend_http):
# `up` and `start rabbitmq` configure the node for it and restart it once when its running
# configuration lacks it. A Mosquitto found on MQTT_PORT is stopped (README, "MQTT edge").
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="$ROOT/.run"
MARKS="$RUN/deps"
ALL_DEPS=(postgres redis rabbitmq influxdb)
START_DEADLINE=60
STOP_DEADLINE=30
POLL=0.2
PATH="$PATH:/usr/sbin:/sbin"

[[ -f "$RUN/env" ]] || "$HERE/env.sh"
set -a
# shellcheck source=/dev/null
. "$RUN/env"
set +a
mkdir -p "$MARKS"

say() { echo "$*"; }
die() { echo "deps: $*" >&2; exit 1; }

# Root, or a user whose sudo needs no password: packages and the machine's own services
# (apt-get, pg_ctlcluster, rabbitmq-server) go through "${AS_ROOT[@]}".
AS_ROOT=()
if [[ "$(id -u)" != 0 ]] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    AS_ROOT=(sudo -n)
fi
can_be_root() { [[ "$(id -u)" == 0 || ${#AS_ROOT[@]} -gt 0 ]]; }
need_root() { # WHAT COMMAND
    can_be_root || die "$1 needs root: run make up as root or with passwordless sudo (the step: $2)"
}
# run_as USER CMD...: as USER (postgres, rabbitmq) from root or through sudo; as oneself otherwise.
run_as() {
    local user="$1"
    shift
    if [[ "$(id -un)" == "$user" ]]; then
        "$@"
    elif [[ "$(id -u)" == 0 ]]; then
        runuser -u "$user" -- "$@"
    elif ((${#AS_ROOT[@]})); then
        sudo -n -u "$user" -- "$@"
    else
        die "this step must run as user $user: run make up as root (or with passwordless sudo)"
    fi
}
systemd_running() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; }

# ---------------------------------------------------------------- URL parsing
# url_parts URL DEFAULT_PORT -> sets U_USER U_PASS U_HOST U_PORT U_PATH
urldecode() { local s="${1//+/ }"; printf '%b' "${s//%/\\x}"; }
url_parts() {
    local url="$1" rest auth userinfo=""
    rest="${url#*://}"
    auth="${rest%%/*}"
    U_PATH=""
    [[ "$rest" == */* ]] && U_PATH="${rest#*/}"
    U_PATH="${U_PATH%%\?*}"
    if [[ "$auth" == *@* ]]; then
        userinfo="${auth%@*}"
        auth="${auth##*@}"
    fi
    U_USER="$(urldecode "${userinfo%%:*}")"
    U_PASS=""
    [[ "$userinfo" == *:* ]] && U_PASS="$(urldecode "${userinfo#*:}")"
    if [[ "$auth" == *:* ]]; then
        U_HOST="${auth%:*}"
        U_PORT="${auth##*:}"
    else
        U_HOST="$auth"
        U_PORT="$2"
    fi
    U_HOST="${U_HOST#[}"
    U_HOST="${U_HOST%]}"
}

# endpoint NAME -> sets HOST PORT
endpoint() {
    case "$1" in
        postgres) url_parts "${POSTGRES_URL:-postgresql://millrace@127.0.0.1:5432/millrace}" 5432 ;;
        redis) url_parts "${REDIS_URL:-redis://127.0.0.1:6379/0}" 6379 ;;
        rabbitmq) url_parts "${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}" 5672 ;;
        mqtt) U_HOST="${MQTT_HOST:-127.0.0.1}"; U_PORT="${MQTT_PORT:-1883}" ;;
        influxdb) url_parts "${INFLUX_URL:-http://127.0.0.1:8086}" 8086 ;;
        *) die "unknown dependency '$1' (expected: ${ALL_DEPS[*]})" ;;
    esac
    HOST="$U_HOST"
    PORT="$U_PORT"
}

is_local_host() { [[ "$1" == 127.* || "$1" == localhost || "$1" == ::1 ]]; }

# ---------------------------------------------------------------- probes
# shellcheck disable=SC2016 # $0/$1 expand in the child shell
tcp_open() { timeout 1 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

# answering NAME: the service is usable at HOST:PORT (endpoint must have been called)
answering() {
    case "$1" in
        postgres)
            if command -v pg_isready >/dev/null 2>&1; then
                pg_isready -q -t 1 -h "$HOST" -p "$PORT"
            else
                tcp_open "$HOST" "$PORT"
            fi
            ;;
        influxdb)
            [[ "$(curl -s -o /dev/null -m 2 -w '%{http_code}' "http://$HOST:$PORT/ping" || true)" == 204 ]]
            ;;
        *) tcp_open "$HOST" "$PORT" ;;
    esac
}

wait_answering() { # NAME [DEADLINE]
    local end=$((SECONDS + ${2:-$START_DEADLINE}))
    until answering "$1"; do
        ((SECONDS < end)) || return 1
        sleep "$POLL"
    done
}

wait_silent() { # NAME [DEADLINE]: until nothing listens on HOST:PORT
    local end=$((SECONDS + ${2:-$STOP_DEADLINE}))
    while tcp_open "$HOST" "$PORT"; do
        ((SECONDS < end)) || return 1
        sleep "$POLL"
    done
}

pid_alive() { [[ -n "${1:-}" ]] && kill -0 "$1" 2>/dev/null; }

# Terminate a pid: SIGTERM, wait for the port to close and the process to exit,
# SIGKILL after the deadline.
term_pid() { # NAME PID
    local end=$((SECONDS + STOP_DEADLINE))
    kill -TERM "$2" 2>/dev/null || true
    while pid_alive "$2" || tcp_open "$HOST" "$PORT"; do
        if ((SECONDS >= end)); then
            say "$1: pid $2 did not exit within ${STOP_DEADLINE}s, sending SIGKILL"
            kill -KILL "$2" 2>/dev/null || true
            sleep "$POLL"
            pid_alive "$2" && return 1
            return 0
        fi
        sleep "$POLL"
    done
}

# pid of the process listening on PORT (needs ss from iproute2), else pgrep by name
listener_pid() { # PROCESS_NAME PORT
    local pid=""
    if command -v ss >/dev/null 2>&1; then
        pid="$(ss -Hltnp "sport = :$2" 2>/dev/null | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2 || true)"
    fi
    [[ -n "$pid" ]] || pid="$(pgrep -x "$1" | head -n1 || true)"
    echo "$pid"
}

# ---------------------------------------------------------------- packages
have() { command -v "$1" >/dev/null 2>&1 || compgen -G "$1" >/dev/null; }

ensure_pkg() { # BINARY-OR-GLOB PACKAGE
    have "$1" && return 0
    need_root "installing '$1'" "apt-get install -y $2"
    say "installing Debian package $2 (for $1)"
    local apt=("${AS_ROOT[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
    if ! "${apt[@]}" install -y -q "$2" >"$MARKS/apt-$2.log" 2>&1; then
        "${apt[@]}" update -q >>"$MARKS/apt-$2.log" 2>&1 || true
        "${apt[@]}" install -y -q "$2" >>"$MARKS/apt-$2.log" 2>&1 \
            || { tail -n 20 "$MARKS/apt-$2.log" >&2; die "apt-get install $2 failed"; }
    fi
    have "$1" || die "package $2 installed but '$1' is still missing"
}

ensure_installed() {
    case "$1" in
        postgres) ensure_pkg '/usr/lib/postgresql/*/bin/postgres' postgresql ;;
        redis) ensure_pkg redis-server redis-server ;;
        rabbitmq) ensure_pkg rabbitmq-server rabbitmq-server ;;
        influxdb) ensure_pkg influxd influxdb ;;
    esac
}

# ---------------------------------------------------------------- per dependency
pg_version() {
    local v
    v="$(pg_lsclusters -h 2>/dev/null | awk '$2 == "main" {print $1}' | sort -V | tail -n1)"
    if [[ -z "$v" ]]; then
        v="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)"
    fi
    [[ -n "$v" ]] || die "postgres: no PostgreSQL version found under /usr/lib/postgresql"
    echo "$v"
}

# The machine's cluster main, when it is configured for the port POSTGRES_URL names (or when
# there is none yet); otherwise a private cluster of our own under .run/postgres-PORT.
pg_main_port() { pg_lsclusters -h 2>/dev/null | awk -v v="$1" '$1 == v && $2 == "main" {print $3}'; }
pg_private_dir() { echo "$RUN/postgres-$PORT"; }
pg_uses_private() {
    local main_port
    main_port="$(pg_main_port "$(pg_version)")"
    [[ -n "$main_port" && "$main_port" != "$PORT" ]] || [[ -d "$(pg_private_dir)/data" ]]
}

start_postgres() {
    local ver
    ver="$(pg_version)"
    if pg_uses_private; then
        start_private_postgres "$ver"
        return
    fi
    need_root "starting PostgreSQL's cluster $ver/main" "pg_ctlcluster $ver main start"
    if ! pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | grep -qx "$ver main"; then
        say "postgres: creating cluster $ver/main on port $PORT"
        "${AS_ROOT[@]}" pg_createcluster -p "$PORT" "$ver" main >/dev/null
    fi
    "${AS_ROOT[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" main start
    STARTED_INFO="cluster"
    STARTED_DESC="cluster $ver/main"
}

start_private_postgres() { # VERSION
    local bin="/usr/lib/postgresql/$1/bin" dir owner=postgres
    dir="$(pg_private_dir)"
    [[ "$(id -u)" == 0 ]] || owner="$(id -un)"
    mkdir -p "$dir"
    [[ "$(id -u)" == 0 ]] && chown "$owner": "$dir"
    if [[ ! -d "$dir/data" ]]; then
        say "postgres: port $PORT is not the machine cluster's ($(pg_main_port "$1")): creating a cluster of our own in .run/postgres-$PORT"
        run_as "$owner" "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 >"$dir/initdb.log" 2>&1 \
            || { tail -n 20 "$dir/initdb.log" >&2; die "postgres: initdb failed (is $dir reachable by user $owner?)"; }
    fi
    run_as "$owner" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t "$START_DEADLINE" \
        -o "-p $PORT -k $dir -c listen_addresses=$HOST" start >/dev/null
    STARTED_INFO="private"
    STARTED_DESC="private cluster in .run/postgres-$PORT"
}

stop_postgres() {
    local ver dir owner=postgres
    ver="$(pg_version)"
    dir="$(pg_private_dir)"
    if [[ -f "$dir/data/postmaster.pid" ]]; then
        [[ "$(id -u)" == 0 ]] || owner="$(id -un)"
        run_as "$owner" "/usr/lib/postgresql/$ver/bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    else
        need_root "stopping PostgreSQL's cluster $ver/main" "pg_ctlcluster $ver main stop"
        "${AS_ROOT[@]}" pg_ctlcluster --skip-systemctl-redirect "$ver" main stop
    fi
}

redis_cmd() {
    local dir="$RUN/redis"
    mkdir -p "$dir"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$PORT" --save "" --appendonly no \
        --dir "$dir" --logfile "$dir/redis.log" --pidfile "$dir/redis.pid"
}

start_redis() {
    rm -f "$RUN/redis/redis.pid"
    redis_cmd
    local end=$((SECONDS + 5))
    until [[ -s "$RUN/redis/redis.pid" ]] || ((SECONDS >= end)); do sleep "$POLL"; done
    STARTED_INFO="$(cat "$RUN/redis/redis.pid" 2>/dev/null || true)"
    STARTED_DESC="pid $STARTED_INFO"
}

stop_redis() {
    if command -v redis-cli >/dev/null 2>&1; then
        redis-cli -h "$HOST" -p "$PORT" shutdown nosave >/dev/null 2>&1 || true
    else
        local pid
        pid="$(listener_pid redis-server "$PORT")"
        if [[ -n "$pid" ]]; then kill -TERM "$pid"; fi
    fi
}

# On 5672 the machine's node (its name and data, /var/lib/rabbitmq). On any other port a node
# of our own: name millrace-PORT@localhost, distribution port PORT+20000, config, plugins and
# data under .run/rabbitmq-PORT. tools and tests name the node the same way (shared/rabbitctl.py).
rabbit_node() { [[ "$PORT" == 5672 ]] || echo "millrace-$PORT@localhost"; }
rabbitmqctl_node() { # ARGS...: rabbitmqctl on the node AMQP_URL names
    local node
    node="$(rabbit_node)"
    "${AS_ROOT[@]}" rabbitmqctl ${node:+-n "$node"} "$@"
}

start_rabbitmq() {
    need_root "starting RabbitMQ (its wrapper runs nodes as user rabbitmq)" "rabbitmq-server -detached"
    local node dir
    node="$(rabbit_node)"
    if [[ -z "$node" ]]; then
        "${AS_ROOT[@]}" rabbitmq-server -detached >>"$MARKS/rabbitmq-start.log" 2>&1
        STARTED_INFO="rabbitmqctl stop"
        STARTED_DESC="rabbitmq-server -detached"
        return
    fi
    dir="$RUN/rabbitmq-$PORT"
    mkdir -p "$dir"
    {
        echo "# GENERATED by infra/local/deps.sh for the node $node; do not edit."
        echo "listeners.tcp.local = $HOST:$PORT"
        echo "loopback_users.guest = true"
        edge_config
    } >"$dir/rabbitmq.conf"
    echo "[rabbitmq_consistent_hash_exchange,$(IFS=,; echo "${EDGE_PLUGINS[*]}")]." >"$dir/enabled_plugins"
    mkdir -p "$dir/conf.d" # its own (empty) conf.d: the machine node's edge file names other ports
    "${AS_ROOT[@]}" chown -R rabbitmq: "$dir" # the node runs as user rabbitmq
    "${AS_ROOT[@]}" env RABBITMQ_NODENAME="$node" RABBITMQ_NODE_PORT="$PORT" \
        RABBITMQ_DIST_PORT=$((PORT + 20000)) RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
        RABBITMQ_CONFIG_FILES="$dir/conf.d" \
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$dir/log" \
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
        rabbitmq-server -detached >>"$MARKS/rabbitmq-start.log" 2>&1
    STARTED_INFO="rabbitmqctl -n $node stop"
    STARTED_DESC="node $node, data in .run/rabbitmq-$PORT"
}

stop_rabbitmq() {
    rabbitmqctl_node stop >>"$MARKS/rabbitmq-stop.log" 2>&1 || true
}

# ---------------------------------------------------------------- the MQTT edge
# RabbitMQ's MQTT plugin is the broker gateways connect to: a PUBACK goes out only after the
# quorum queue "mqtt.telemetry" confirmed the message (fsynced), and every CONNECT, PUBLISH and
# SUBSCRIBE of a gateway is authorised by the auth service over HTTP. The service users (the
# bridge's status, the alerter's notifications) are RabbitMQ's own (internal backend first).
EDGE_PLUGINS=(rabbitmq_mqtt rabbitmq_auth_backend_http)

edge_config() { # the node's configuration for the edge, one key per line
    local mqtt_host="${MQTT_HOST:-127.0.0.1}" auth="http://127.0.0.1:${AUTH_PORT:-8003}/api/v1/mqtt/auth"
    echo "mqtt.listeners.tcp.default = $mqtt_host:${MQTT_PORT:-1883}"
    echo "mqtt.allow_anonymous = false"
    echo "mqtt.vhost = /"
    echo "mqtt.exchange = amq.topic"
    echo "auth_backends.1 = internal"
    echo "auth_backends.2 = http"
    echo "auth_http.http_method = post"
    echo "auth_http.user_path = $auth/user"
    echo "auth_http.vhost_path = $auth/vhost"
    echo "auth_http.resource_path = $auth/resource"
    echo "auth_http.topic_path = $auth/topic"
}

# Where the machine's node reads extra configuration (RabbitMQ 3.10+: conf.d beside rabbitmq.conf).
EDGE_CONF_D=/etc/rabbitmq/conf.d
EDGE_CONF="$EDGE_CONF_D/60-millrace-edge.conf"

# write_edge_config: the machine's node gets conf.d/60-millrace-edge.conf and the plugins in
# its enabled_plugins; a node of our own gets both in .run/rabbitmq-PORT (start_rabbitmq).
write_edge_config() {
    [[ -n "$(rabbit_node)" ]] && return 0
    need_root "configuring RabbitMQ's MQTT edge" "writing $EDGE_CONF"
    local tmp
    tmp="$(mktemp)"
    {
        echo "# GENERATED by Millrace's infra/local/deps.sh (the MQTT edge); do not edit."
        edge_config
    } >"$tmp"
    "${AS_ROOT[@]}" mkdir -p "$EDGE_CONF_D"
    if ! cmp -s "$tmp" "$EDGE_CONF" 2>/dev/null; then
        "${AS_ROOT[@]}" install -m 0644 "$tmp" "$EDGE_CONF"
        say "rabbitmq: wrote $EDGE_CONF"
    fi
    rm -f "$tmp"
    "${AS_ROOT[@]}" rabbitmq-plugins --offline enable "${EDGE_PLUGINS[@]}" >>"$MARKS/rabbitmq-plugins.log" 2>&1 \
        || die "rabbitmq: could not enable ${EDGE_PLUGINS[*]} (see .run/deps/rabbitmq-plugins.log)"
}

# edge_running: the node answering on AMQP serves MQTT on MQTT_PORT and asks auth over HTTP.
edge_running() {
    local listeners backends
    listeners="$(rabbitmqctl_node -q eval \
        'lists:any(fun(L) -> element(3, L) =:= mqtt end, rabbit_networking:active_listeners()).' 2>/dev/null || true)"
    backends="$(rabbitmqctl_node -q eval 'application:get_env(rabbit, auth_backends).' 2>/dev/null || true)"
    [[ "$listeners" == true && "$backends" == *rabbit_auth_backend_http* ]] || return 1
    local saved_host="$HOST" saved_port="$PORT" ok=0
    endpoint mqtt
    tcp_open "$HOST" "$PORT" || ok=1
    HOST="$saved_host"
    PORT="$saved_port"
    return "$ok"
}

# free_mqtt_port: a Mosquitto on MQTT_PORT (the package's, or one an earlier Millrace started)
# gives way to the edge. Anything else there is an error: we do not stop what we do not know.
free_mqtt_port() {
    local saved_host="$HOST" saved_port="$PORT" pid comm
    endpoint mqtt
    if tcp_open "$HOST" "$PORT" && is_local_host "$HOST"; then
        pid="$(listener_pid mosquitto "$PORT")"
        comm="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
        if [[ "$comm" == mosquitto ]]; then
            say "mqtt: stopping the Mosquitto on $HOST:$PORT (pid $pid): Millrace's MQTT edge is RabbitMQ's"
            if systemd_running && systemctl is-active --quiet mosquitto 2>/dev/null; then
                "${AS_ROOT[@]}" systemctl disable --now mosquitto >/dev/null 2>&1 || true
            fi
            term_pid mosquitto "$pid" || die "mqtt: Mosquitto (pid $pid) did not stop"
        elif [[ "$comm" != beam.smp ]]; then
            die "mqtt: $HOST:$PORT is taken by '${comm:-an unknown process}'; set MQTT_PORT in .run/env"
        fi
    fi
    HOST="$saved_host"
    PORT="$saved_port"
}

# ensure_edge: after RabbitMQ answers. Restarts the node once if its configuration lacks the edge.
ensure_edge() {
    endpoint rabbitmq
    is_local_host "$HOST" || return 0 # a remote broker is configured by its operator
    edge_running && return 0
    write_edge_config
    free_mqtt_port
    say "rabbitmq: restarting the node on $HOST:$PORT to load the MQTT edge"
    stop_rabbitmq
    wait_silent rabbitmq || die "rabbitmq: still answering on $HOST:$PORT"
    start_rabbitmq 9>&-
    wait_answering rabbitmq || die "rabbitmq: did not come back on $HOST:$PORT"
    local end=$((SECONDS + START_DEADLINE))
    until edge_running; do
        ((SECONDS < end)) || die "rabbitmq: the MQTT edge is not up on ${MQTT_HOST:-127.0.0.1}:${MQTT_PORT:-1883} (see the node's log)"
        sleep "$POLL"
    done
    say "rabbitmq: MQTT edge on ${MQTT_HOST:-127.0.0.1}:${MQTT_PORT:-1883}"
}

sed_escape() { printf '%s' "$1" | sed -e 's/[\\|&]/\\&/g'; }

start_influxdb() {
    local dir="$RUN/influxdb" rpc_port=$((PORT + 2)) bind=127.0.0.1
    is_local_host "$HOST" && [[ "$HOST" != localhost ]] && bind="$HOST"
    mkdir -p "$dir/meta" "$dir/data" "$dir/wal"
    sed -e "s|@RUN_DIR@|$(sed_escape "$dir")|g" \
        -e "s|@HTTP_BIND@|$bind:$PORT|g" \
        -e "s|@RPC_BIND@|127.0.0.1:$rpc_port|g" \
        "$ROOT/infra/influxdb/influxdb.conf" >"$dir/influxdb.conf"
    rm -f "$dir/influxd.pid"
    setsid nohup influxd run -config "$dir/influxdb.conf" -pidfile "$dir/influxd.pid" \
        >>"$dir/influxd.log" 2>&1 </dev/null &
    local end=$((SECONDS + 10))
    until [[ -s "$dir/influxd.pid" ]] || ((SECONDS >= end)); do sleep "$POLL"; done
    STARTED_INFO="$(cat "$dir/influxd.pid" 2>/dev/null || true)"
    STARTED_DESC="pid $STARTED_INFO"
}

stop_influxdb() {
    local pid=""
    [[ -s "$RUN/influxdb/influxd.pid" ]] && pid="$(cat "$RUN/influxdb/influxd.pid")"
    pid_alive "$pid" || pid="$(listener_pid influxd "$PORT")"
    [[ -n "$pid" ]] || die "influxdb: answering on $HOST:$PORT but no influxd process found"
    term_pid influxdb "$pid"
}

# ---------------------------------------------------------------- provisioning
# Role and databases from POSTGRES_URL (idempotent; the password follows the URL).
provision_postgres() {
    url_parts "$POSTGRES_URL" 5432
    local role="${U_USER:-millrace}" pass="$U_PASS" db="${U_PATH:-millrace}"
    local -a psql_cmd
    if [[ -d "$RUN/postgres-$PORT/data" ]]; then # our own cluster: its superuser, trusted locally
        psql_cmd=(psql -X -q -w -v ON_ERROR_STOP=1 -h "$RUN/postgres-$PORT" -p "$PORT" -U postgres -d postgres)
    elif [[ "$(id -u)" == 0 ]] && id postgres >/dev/null 2>&1 && is_local_host "$HOST"; then
        psql_cmd=(runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres)
    elif ((${#AS_ROOT[@]})) && id postgres >/dev/null 2>&1 && is_local_host "$HOST"; then
        psql_cmd=(sudo -n -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PORT" -d postgres)
    else
        psql_cmd=(psql -X -q -w -v ON_ERROR_STOP=1 -h "$HOST" -p "$PORT" -U postgres -d postgres)
    fi
    (cd / && "${psql_cmd[@]}" -v role="$role" -v pass="$pass" -v db="$db" -v testdb="${db}_test") <<'SQL' \
        || die "postgres: could not provision role/databases (needs superuser 'postgres' access)"
SELECT format('CREATE ROLE %I LOGIN', :'role')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" WITH LOGIN PASSWORD :'pass';
SELECT format('CREATE DATABASE %I OWNER %I', d, :'role')
  FROM unnest(ARRAY[:'db', :'testdb']) AS d
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d) \gexec
ALTER DATABASE :"db" OWNER TO :"role";
ALTER DATABASE :"testdb" OWNER TO :"role";
SQL
    say "postgres: role $role and databases $db, ${db}_test present"
}

# ---------------------------------------------------------------- commands
marker() { echo "$MARKS/$1.started"; }
foreign_marker() { echo "$MARKS/$1.foreign-stopped"; }

# do_start NAME: start (installing if needed) and wait; records a marker unless the
# process stands in for a machine service that `stop` took down.
do_start() {
    local name="$1"
    endpoint "$name"
    is_local_host "$HOST" || die "$name: $HOST:$PORT is not answering and is not a local address"
    # 9>&-: daemons must not inherit the lock fd (they would hold the lock forever).
    ensure_installed "$name" 9>&-
    if answering "$name"; then # the package's install script (systemd) may have started it
        say "$name: already answering on $HOST:$PORT, reusing"
        return 0
    fi
    if [[ "$name" == rabbitmq ]]; then
        write_edge_config
        free_mqtt_port
    fi
    STARTED_INFO=""
    STARTED_DESC=""
    "start_$name" 9>&-
    if ! wait_answering "$name"; then
        case "$name" in
            redis) tail -n 30 "$RUN/redis/redis.log" >&2 2>/dev/null || true ;;
            influxdb) tail -n 30 "$RUN/influxdb/influxd.log" >&2 2>/dev/null || true ;;
            rabbitmq) tail -n 30 "$MARKS/rabbitmq-start.log" >&2 2>/dev/null || true ;;
        esac
        die "$name: did not answer on $HOST:$PORT within ${START_DEADLINE}s"
    fi
    if [[ -f "$(foreign_marker "$name")" ]]; then
        rm -f "$(foreign_marker "$name")"
        say "$name: restarted ($STARTED_DESC) on $HOST:$PORT [machine service, left running by down]"
    else
        echo "$STARTED_INFO" >"$(marker "$name")"
        say "$name: started ($STARTED_DESC) on $HOST:$PORT"
    fi
}

# do_stop NAME: stop whatever answers at HOST:PORT and wait until the port is closed.
do_stop() {
    local name="$1"
    endpoint "$name"
    if ! tcp_open "$HOST" "$PORT"; then
        say "$name: not answering on $HOST:$PORT, nothing to stop"
        return 0
    fi
    "stop_$name"
    wait_silent "$name" || die "$name: still answering on $HOST:$PORT after ${STOP_DEADLINE}s"
    if [[ ! -f "$(marker "$name")" ]]; then
        touch "$(foreign_marker "$name")"
    fi
    say "$name: stopped"
}

cmd_up() {
    local name
    ensure_pkg mosquitto_pub mosquitto-clients 9>&- # tests use the real mosquitto_pub/sub
    for name in "${ALL_DEPS[@]}"; do
        endpoint "$name"
        if answering "$name"; then
            say "$name: already answering on $HOST:$PORT, reusing"
        else
            do_start "$name"
        fi
        if [[ "$name" == postgres ]]; then
            provision_postgres
        fi
        if [[ "$name" == rabbitmq ]]; then
            ensure_edge
        fi
    done
}

cmd_down() {
    local name m info
    for name in "${ALL_DEPS[@]}"; do
        m="$(marker "$name")"
        [[ -f "$m" ]] || continue
        info="$(cat "$m")"
        endpoint "$name"
        if tcp_open "$HOST" "$PORT"; then
            case "$name" in
                postgres) stop_postgres ;;
                rabbitmq) stop_rabbitmq ;;
                redis | influxdb)
                    if pid_alive "$info"; then term_pid "$name" "$info"; else "stop_$name"; fi
                    ;;
            esac
            wait_silent "$name" || die "$name: still answering on $HOST:$PORT after ${STOP_DEADLINE}s"
            say "$name: stopped"
        else
            say "$name: was not running"
        fi
        rm -f "$m"
    done
}

cmd_status() {
    local name state who
    for name in "${ALL_DEPS[@]}"; do
        endpoint "$name"
        if answering "$name"; then state="answering"; else state="NOT answering"; fi
        if [[ -f "$(marker "$name")" ]]; then
            who="started by deps.sh ($(cat "$(marker "$name")"))"
        elif [[ -f "$(foreign_marker "$name")" ]]; then
            who="machine service, stopped by deps.sh stop"
        else
            who="not started by deps.sh"
        fi
        say "$name: $state on $HOST:$PORT, $who"
    done
}

check_name() {
    local n
    for n in "${ALL_DEPS[@]}"; do [[ "$n" == "${1:-}" ]] && return 0; done
    die "unknown dependency '${1:-}' (expected one of: ${ALL_DEPS[*]})"
}

# One deps.sh at a time (make up in two terminals, tests racing a chaos harness).
exec 9>"$MARKS/.lock"
flock 9

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    start)
        check_name "${2:-}"
        endpoint "$2"
        if answering "$2"; then
            say "$2: already answering on $HOST:$PORT"
        else
            do_start "$2"
        fi
        if [[ "$2" == postgres ]]; then provision_postgres; fi
        if [[ "$2" == rabbitmq ]]; then ensure_edge; fi
        ;;
    stop)
        check_name "${2:-}"
        do_stop "$2"
        ;;
    *)
        echo "usage: $0 up | down | start NAME | stop NAME | status" >&2
        echo "       NAME: ${ALL_DEPS[*]}" >&2
        exit 2
        ;;
esac
