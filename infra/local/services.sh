#!/usr/bin/env bash
# Millrace Python services as local background processes (no Docker engine).
#
#   services.sh up [NAME...]     start what is not running, wait until /ready answers 200
#   services.sh down [NAME...]   SIGTERM, wait up to 20 s, then SIGKILL
#   services.sh status           pid, alive, /ready per service
#
# NAME: auth writer ingest_gateway mqtt_bridge query_api alerter (started in that order).
# Each runs as `.venv/bin/python -m services.<name>` from the repo root with .run/env
# in its environment; logs in .run/<name>.log, pid in .run/<name>.pid.
# WRITER_COUNT=N runs N writers: instance i>0 is "writer-<i>" on WRITER_PORT+10*i.
# Defaults follow the machine (nproc): one writer per core (each waits on its own InfluxDB
# write), and one ingest worker process per two cores (INGEST_GATEWAY_WORKERS; on two cores a
# second worker took CPU from the writers and stored less, see README "Performance").
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
RUN="$ROOT/.run"
PYTHON="$ROOT/.venv/bin/python"
ORDER=(auth writer ingest_gateway mqtt_bridge query_api alerter)
READY_DEADLINE=60
STOP_DEADLINE=30  # above the services' own SHUTDOWN_TIMEOUT_S (20 s) drain
POLL=0.2

[[ -f "$RUN/env" ]] || "$HERE/env.sh"
set -a
# shellcheck source=/dev/null
. "$RUN/env"
INGEST_GATEWAY_PORT="${INGEST_GATEWAY_PORT:-8001}"
QUERY_API_PORT="${QUERY_API_PORT:-8002}"
AUTH_PORT="${AUTH_PORT:-8003}"
MQTT_BRIDGE_PORT="${MQTT_BRIDGE_PORT:-8004}"
WRITER_PORT="${WRITER_PORT:-8005}"
ALERTER_PORT="${ALERTER_PORT:-8006}"
set +a
CORES="$(nproc 2>/dev/null || echo 1)"
WRITER_COUNT="${WRITER_COUNT:-$CORES}"
export INGEST_GATEWAY_WORKERS="${INGEST_GATEWAY_WORKERS:-$(((CORES + 1) / 2))}"
# millrace_build_info names the commit the processes run (the image sets it from its build).
MILLRACE_REVISION="${MILLRACE_REVISION:-$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)}"
export MILLRACE_REVISION
[[ "$WRITER_COUNT" =~ ^[1-9][0-9]*$ ]] || { echo "services: WRITER_COUNT must be >= 1" >&2; exit 2; }

base_port() {
    case "$1" in
        ingest_gateway) echo "$INGEST_GATEWAY_PORT" ;;
        query_api) echo "$QUERY_API_PORT" ;;
        auth) echo "$AUTH_PORT" ;;
        mqtt_bridge) echo "$MQTT_BRIDGE_PORT" ;;
        writer) echo "$WRITER_PORT" ;;
        alerter) echo "$ALERTER_PORT" ;;
    esac
}

# Requested service names, validated, in start order.
select_services() {
    local s r found
    SELECTED=()
    for r in "$@"; do
        found=0
        for s in "${ORDER[@]}"; do [[ "$s" == "$r" ]] && found=1; done
        ((found)) || { echo "services: unknown service '$r' (expected: ${ORDER[*]})" >&2; exit 2; }
    done
    for s in "${ORDER[@]}"; do
        if (($# == 0)); then
            SELECTED+=("$s")
        else
            for r in "$@"; do [[ "$s" == "$r" ]] && { SELECTED+=("$s"); break; }; done
        fi
    done
    # The last test above may be false; without this the function "fails" and set -e exits.
    return 0
}

# Instances to start: "instance service port" lines.
instances_for_up() {
    local s i
    for s in "$@"; do
        if [[ "$s" == writer ]]; then
            echo "writer writer $WRITER_PORT"
            for ((i = 1; i < WRITER_COUNT; i++)); do
                echo "writer-$i writer $((WRITER_PORT + 10 * i))"
            done
        else
            echo "$s $s $(base_port "$s")"
        fi
    done
}

# Instances that have a pid file (every writer-<i>, whatever WRITER_COUNT is now).
instances_with_pidfiles() {
    local s f inst i
    for s in "$@"; do
        for f in "$RUN/$s.pid" "$RUN/$s"-*.pid; do
            [[ -f "$f" ]] || continue
            inst="$(basename "$f" .pid)"
            if [[ "$inst" == writer-* ]]; then
                i="${inst#writer-}"
                [[ "$i" =~ ^[0-9]+$ ]] || continue
                echo "$inst writer $((WRITER_PORT + 10 * i))"
            elif [[ "$inst" == "$s" ]]; then
                echo "$inst $s $(base_port "$s")"
            fi
        done
    done
}

# pid from the pid file if that process is alive and is our service.
live_pid() { # INSTANCE SERVICE
    local pid
    [[ -s "$RUN/$1.pid" ]] || return 1
    pid="$(cat "$RUN/$1.pid")"
    [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "-m services\.$2" || return 1
    echo "$pid"
}

ready() { curl -fsS -o /dev/null -m 2 "http://127.0.0.1:$1/ready" 2>/dev/null; }

start_instance() { # INSTANCE SERVICE PORT
    local inst="$1" svc="$2" port="$3" end
    rm -f "$RUN/$inst.pid"
    # The child writes its own pid, then execs python: correct even if setsid forks.
    # shellcheck disable=SC2016 # expanded by the child shell
    (
        cd "$ROOT"
        export MILLRACE_INSTANCE="$inst"
        if [[ "$svc" == writer ]]; then export WRITER_PORT="$port"; fi
        # A long-lived service must not inherit the caller's descriptors: a lock held by the
        # shell that ran `make up` (flock) would otherwise be held for the service's whole life.
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        setsid nohup bash -c 'echo $$ >"$0"; exec "$@"' "$RUN/$inst.pid" \
            "$PYTHON" -m "services.$svc" >>"$RUN/$inst.log" 2>&1 </dev/null &
    )
    end=$((SECONDS + 5))
    until [[ -s "$RUN/$inst.pid" ]]; do
        ((SECONDS < end)) || { echo "$inst: failed to start (no pid file)" >&2; return 1; }
        sleep "$POLL"
    done
    echo "$inst: started (pid $(cat "$RUN/$inst.pid")) on port $port, log .run/$inst.log"
}

fail_with_log() { # INSTANCE MESSAGE
    echo "$1: $2; last 30 lines of .run/$1.log:" >&2
    tail -n 30 "$RUN/$1.log" >&2 2>/dev/null || true
    exit 1
}

cmd_up() {
    local inst svc port pid end
    local -a waiting=()
    select_services "$@"
    mkdir -p "$RUN"
    [[ -x "$PYTHON" ]] || { echo "services: $PYTHON missing (create the virtualenv first, e.g. make venv)" >&2; exit 1; }
    while read -r inst svc port; do
        if [[ ! -f "$ROOT/services/$svc/__main__.py" ]]; then
            echo "WARNING: $inst: services/$svc/__main__.py does not exist yet, NOT started" >&2
            continue
        fi
        if pid="$(live_pid "$inst" "$svc")"; then
            echo "$inst: already running (pid $pid)"
        else
            start_instance "$inst" "$svc" "$port"
        fi
        waiting+=("$inst:$svc:$port")
    done < <(instances_for_up "${SELECTED[@]}")

    end=$((SECONDS + READY_DEADLINE))
    local item
    for item in "${waiting[@]}"; do
        IFS=: read -r inst svc port <<<"$item"
        until ready "$port"; do
            live_pid "$inst" "$svc" >/dev/null || fail_with_log "$inst" "process exited before /ready"
            ((SECONDS < end)) || fail_with_log "$inst" "GET :$port/ready not 200 within ${READY_DEADLINE}s"
            sleep "$POLL"
        done
        echo "$inst: ready on http://127.0.0.1:$port"
    done
}

cmd_down() {
    local inst svc port pid end
    local -a pids=() names=()
    select_services "$@"
    # Stop in reverse start order: producers before consumers, auth last.
    local -a rev=()
    local i
    for ((i = ${#SELECTED[@]} - 1; i >= 0; i--)); do rev+=("${SELECTED[i]}"); done
    while read -r inst svc port; do
        if pid="$(live_pid "$inst" "$svc")"; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
            names+=("$inst")
        else
            echo "$inst: not running"
            rm -f "$RUN/$inst.pid"
        fi
    done < <(instances_with_pidfiles "${rev[@]}")

    end=$((SECONDS + STOP_DEADLINE))
    for i in "${!pids[@]}"; do
        while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < end)); do sleep "$POLL"; done
        if kill -0 "${pids[i]}" 2>/dev/null; then
            kill -KILL "${pids[i]}" 2>/dev/null || true
            echo "${names[i]}: did not exit within ${STOP_DEADLINE}s, killed (pid ${pids[i]})"
        else
            echo "${names[i]}: stopped (pid ${pids[i]})"
        fi
        rm -f "$RUN/${names[i]}.pid"
    done
}

cmd_status() {
    local inst svc port pid alive rd
    select_services "$@"
    while read -r inst svc port; do
        if pid="$(live_pid "$inst" "$svc")"; then
            alive="alive"
        else
            pid="$(cat "$RUN/$inst.pid" 2>/dev/null || echo -)"
            alive="not running"
        fi
        if ready "$port"; then rd="200"; else rd="not ready"; fi
        printf '%-16s pid %-8s %-12s /ready :%s %s\n' "$inst" "$pid" "$alive" "$port" "$rd"
    done < <(
        for svc in "${SELECTED[@]}"; do
            instances_for_up "$svc"
            instances_with_pidfiles "$svc"
        done | awk '!seen[$1]++'
    )
}

case "${1:-}" in
    up) shift; cmd_up "$@" ;;
    down) shift; cmd_down "$@" ;;
    status) shift; cmd_status "$@" ;;
    *)
        echo "usage: $0 up [NAME...] | down [NAME...] | status [NAME...]" >&2
        echo "       NAME: ${ORDER[*]}" >&2
        exit 2
        ;;
esac
