# shellcheck shell=bash
# Private Mosquitto, InfluxDB 1.x and VictoriaMetrics instances for one test run.
#
# Every instance lives in its own folder under RUN_DIR (a mktemp -d folder),
# listens on free loopback ports only, and is stopped by stop_services. The
# machine's own services (which may well be running on the default ports) are
# never touched.
#
# Sourced by scripts/test; needs common.sh. Expects RUN_DIR and PROBE (the
# command that runs scripts/lib/probe.py) to be set.

# How long each service may take to become ready before the run gives up.
readonly SERVICE_START_TIMEOUT_S=30
# How long a service may take to exit after SIGTERM before it is killed.
readonly SERVICE_STOP_TIMEOUT_S=15

# The private MQTT accounts (see tests/conftest.py and docs/protocol.md).
readonly MQTT_GATEWAY_USER="gw-test"
readonly MQTT_DEVICE_USERS=(0000a001 0000a002 0000a003 0000a004 0000a005 0000a006 0000a007 0000a008)

# Parallel arrays of what this run started, for stop_services.
STARTED_NAMES=()
STARTED_PIDS=()

# start_service NAME LOGFILE COMMAND...: run COMMAND in the background, record it.
# setsid puts the service in its own session, so a Ctrl-C in the terminal
# reaches pytest and this script but not the services: they are stopped in
# order by stop_services instead of dying mid-test. (A background child of a
# non-interactive shell is no process-group leader, so setsid execs in place
# and $! is the service's own PID.)
start_service() {
    local name="$1" logfile="$2"
    shift 2
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
    STARTED_NAMES+=("$name")
    STARTED_PIDS+=("$!")
}

# wait_ready NAME LOGFILE PROBE-ARGS...: wait via probe.py (with the PID of the
# last started service); on failure print the log tail and stop the run.
wait_ready() {
    local name="$1" logfile="$2"
    shift 2
    local pid="${STARTED_PIDS[-1]}"
    if ! "${PROBE[@]}" "$@" "$pid" "$SERVICE_START_TIMEOUT_S"; then
        log_tail "$name" "$logfile"
        KEEP_RUN_DIR=1
        die "${name} did not start (log above; its config and log are kept in ${RUN_DIR})"
    fi
}

# Stop everything start_service started: SIGTERM to all at once (each shuts
# down cleanly, flushing its data), then SIGKILL for any still running after
# SERVICE_STOP_TIMEOUT_S. Safe to call more than once.
stop_services() {
    local i pid waited_ds=0 running
    for pid in "${STARTED_PIDS[@]}"; do
        [[ -n "$pid" ]] && kill -TERM "$pid" 2>/dev/null
    done
    while ((waited_ds < SERVICE_STOP_TIMEOUT_S * 10)); do
        running=0
        for pid in "${STARTED_PIDS[@]}"; do
            [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && running=1
        done
        ((running)) || break
        sleep 0.1
        waited_ds=$((waited_ds + 1))
    done
    for i in "${!STARTED_PIDS[@]}"; do
        pid="${STARTED_PIDS[i]}"
        [[ -n "$pid" ]] || continue
        if kill -0 "$pid" 2>/dev/null; then
            log "${STARTED_NAMES[i]} (pid ${pid}) ignored SIGTERM for ${SERVICE_STOP_TIMEOUT_S} s; killing it"
            kill -KILL "$pid" 2>/dev/null
        fi
        wait "$pid" 2>/dev/null
        STARTED_PIDS[i]=""
    done
    return 0
}

# ---------------------------------------------------------------- Mosquitto

# start_mosquitto: exports PATROL_TEST_MQTT_HOST/PORT/CREDENTIALS.
start_mosquitto() {
    local dir="${RUN_DIR}/mosquitto"
    local port user password
    mkdir -p "${dir}/data"
    port="$("${PROBE[@]}" free-ports 1)"

    # One random password per account. The password file ends up holding only
    # salted hashes: it is written in clear ("user:password" lines, never on a
    # command line where ps would show them) and hashed in place by
    # `mosquitto_passwd -U`. The clear passwords also go to a JSON file that
    # only this user can read, for the tests to log in with.
    local users=("$MQTT_GATEWAY_USER" "${MQTT_DEVICE_USERS[@]}")
    local json_users=()
    (
        umask 077
        for user in "${users[@]}"; do
            password="$(random_hex 24)"
            printf '%s:%s\n' "$user" "$password" >>"${dir}/passwd"
        done
    )
    while IFS=: read -r user password; do
        json_users+=("\"${user}\": \"${password}\"")
    done <"${dir}/passwd"
    # setsid: mosquitto_passwd 2.0.11 can deadlock in its own SIGINT handler,
    # which would hang a Ctrl-C'd run; keep it out of the terminal's reach.
    setsid -w mosquitto_passwd -U "${dir}/passwd" </dev/null

    local credentials="${dir}/credentials.json"
    (
        umask 077
        local IFS=","
        printf '{"gateway": "%s", "users": {%s}}\n' "$MQTT_GATEWAY_USER" "${json_users[*]}" \
            >"$credentials"
    )

    # The ACL exactly as docs/protocol.md states it, with the test gateway's name.
    # Pattern lines apply to every user, %u being the username (the device id).
    cat >"${dir}/acl" <<EOF
user ${MQTT_GATEWAY_USER}
topic readwrite patrol/v1/#

pattern write patrol/v1/dev/%u/up
pattern write patrol/v1/dev/%u/status
pattern read patrol/v1/dev/%u/ack
pattern read patrol/v1/dev/%u/cmd
EOF

    cat >"${dir}/mosquitto.conf" <<EOF
# Private broker for one test run (written by scripts/test).
per_listener_settings false
listener ${port} 127.0.0.1
allow_anonymous false
password_file ${dir}/passwd
acl_file ${dir}/acl

# Started as root, Mosquitto would drop to user "mosquitto", which may not
# read this private folder; stay root (the process is loopback-only).
user root

# Persistence as on the Pi, so tests of persistent sessions see real behaviour.
persistence true
persistence_location ${dir}/data/
autosave_interval 1800

# Mosquitto's defaults (1,000 queued, 20 in flight per client) silently DROP
# QoS 1 messages beyond the queue while a persistent subscriber is offline or
# slow. The product promises never to lose an acknowledged event, and tests
# and benchmarks queue far more than 1,000 messages, so raise both well above
# anything a test produces (memory is the only cost).
max_queued_messages 1000000
max_queued_bytes 0
max_inflight_messages 1000

log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %H:%M:%S
EOF

    start_service mosquitto "${dir}/mosquitto.log" mosquitto -c "${dir}/mosquitto.conf"
    wait_ready mosquitto "${dir}/mosquitto.log" wait-tcp "$port"

    export PATROL_TEST_MQTT_HOST="127.0.0.1"
    export PATROL_TEST_MQTT_PORT="$port"
    export PATROL_TEST_MQTT_CREDENTIALS="$credentials"
}

# ---------------------------------------------------------------- InfluxDB 1.x

# start_influxdb: exports PATROL_TEST_INFLUX_URL and PATROL_TEST_INFLUX_DB.
start_influxdb() {
    local dir="${RUN_DIR}/influxdb"
    local http_port rpc_port
    mkdir -p "$dir"
    read -r http_port rpc_port <<<"$("${PROBE[@]}" free-ports 2)"

    # Every setting that would bind a port or write outside this folder is set
    # here; influxd fills the rest with its built-in defaults (graphite,
    # collectd, opentsdb and udp listeners are off by default).
    cat >"${dir}/influxdb.conf" <<EOF
# Private InfluxDB 1.x for one test run (written by scripts/test).
reporting-disabled = true
# The RPC (backup/restore) service binds 8088 by default, which a machine's
# own influxd may hold: move it to a free loopback port.
bind-address = "127.0.0.1:${rpc_port}"

[meta]
  dir = "${dir}/meta"

[data]
  dir = "${dir}/data"
  wal-dir = "${dir}/wal"
  query-log-enabled = false

[monitor]
  # No _internal database: less background work, nothing unexpected in SHOW DATABASES.
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:${http_port}"
  auth-enabled = false
  log-enabled = false
  unix-socket-enabled = false

[ifql]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
EOF

    start_service influxd "${dir}/influxd.log" influxd run -config "${dir}/influxdb.conf"
    local url="http://127.0.0.1:${http_port}"
    wait_ready influxd "${dir}/influxd.log" wait-http "${url}/ping"

    local database="patrol_test"
    "${PROBE[@]}" post-form "${url}/query" "q=CREATE DATABASE ${database}" ||
        die "could not create InfluxDB database ${database}"

    export PATROL_TEST_INFLUX_URL="$url"
    export PATROL_TEST_INFLUX_DB="$database"
}

# ---------------------------------------------------------------- VictoriaMetrics

# start_victoria_metrics: exports PATROL_TEST_VM_URL.
start_victoria_metrics() {
    local dir="${RUN_DIR}/victoria-metrics"
    local port
    mkdir -p "$dir"
    port="$("${PROBE[@]}" free-ports 1)"

    # -retentionPeriod: the default (1 month) would silently drop samples that
    #   tests write with fixed, older timestamps.
    # -search.latencyOffset: the default 30 s hides fresh samples from queries;
    #   tests read back what they just wrote.
    start_service victoria-metrics "${dir}/victoria-metrics.log" \
        victoria-metrics \
        -httpListenAddr "127.0.0.1:${port}" \
        -storageDataPath "${dir}/data" \
        -retentionPeriod 100y \
        -search.latencyOffset 0s \
        -loggerLevel WARN
    local url="http://127.0.0.1:${port}"
    wait_ready victoria-metrics "${dir}/victoria-metrics.log" wait-http "${url}/health"

    export PATROL_TEST_VM_URL="$url"
}
