# shellcheck shell=bash
# A private PostgreSQL database for one test run, on the machine's own cluster.
#
# PostgreSQL is not started privately: `initdb` refuses to run as root, and
# Debian's cluster tools already handle users, sockets and permissions. So the
# run uses the cluster on 127.0.0.1:PG_PORT, starts it if it is installed but
# stopped (and stops it again at exit), installs it if absent, and creates a
# login role and a database with random names that are dropped at exit.
#
# Sourced by scripts/test; needs common.sh and debian.sh.
#
# Administration (CREATE/DROP) runs as the cluster's superuser: through the
# Unix socket as user "postgres" (Debian's default peer authentication), or,
# for a server that is not the local Debian cluster, through the superuser URL
# in PATROL_TEST_PG_ADMIN_URL.

readonly PG_HOST="127.0.0.1"
readonly PG_PORT="${PATROL_TEST_PG_PORT:-5432}"
# How long a cluster we started may take to accept connections.
readonly PG_START_TIMEOUT_S=60

PG_STARTED_CLUSTER=""  # "VERSION NAME" when this run started the cluster
PG_ROLE=""             # set once the private role exists
PG_DATABASE=""         # set once the private database exists

# True when something accepts PostgreSQL connections on PG_HOST:PG_PORT.
pg_reachable() {
    if command -v pg_isready >/dev/null; then
        pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2
    else
        (exec 3<>"/dev/tcp/${PG_HOST}/${PG_PORT}") 2>/dev/null
    fi
}

# pg_admin_psql SQL: run SQL as the cluster's superuser, stop on the first error.
pg_admin_psql() {
    local sql="$1"
    local psql_args=(-X -q -v ON_ERROR_STOP=1 -c "$sql")
    if [[ -n "${PATROL_TEST_PG_ADMIN_URL:-}" ]]; then
        psql "$PATROL_TEST_PG_ADMIN_URL" "${psql_args[@]}"
    elif ((EUID == 0)); then
        # cd /: the postgres user may not be able to enter the current folder.
        (cd / && runuser -u postgres -- psql -p "$PG_PORT" "${psql_args[@]}")
    elif [[ "$(id -un)" == "postgres" ]]; then
        psql -p "$PG_PORT" "${psql_args[@]}"
    else
        (cd / && sudo -n -u postgres psql -p "$PG_PORT" "${psql_args[@]}")
    fi
}

# The Debian cluster ("VERSION NAME") configured on PG_PORT, if any.
pg_cluster_on_port() {
    command -v pg_lsclusters >/dev/null || return 0
    pg_lsclusters --no-header 2>/dev/null | awk -v port="$PG_PORT" '$3 == port { print $1, $2; exit }'
}

# Make a PostgreSQL server reachable on PG_HOST:PG_PORT.
ensure_postgres_running() {
    if pg_reachable; then
        log "postgresql: using the running server on ${PG_HOST}:${PG_PORT}"
        return 0
    fi
    ensure_debian_packages "$PIN_POSTGRESQL"

    local cluster
    cluster="$(pg_cluster_on_port)"
    if [[ -z "$cluster" ]]; then
        # Installed without a cluster (or the package's cluster was removed):
        # create Debian's default one. pg_createcluster runs initdb as the
        # postgres user, which is why this works as root.
        local version
        version="$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -n | tail -n 1)"
        [[ -n "$version" ]] || die "postgresql is installed but no server version found under /usr/lib/postgresql"
        if [[ -d "/etc/postgresql/${version}/main" ]]; then
            die "PostgreSQL cluster ${version} main exists but not on port ${PG_PORT} (pg_lsclusters shows its port): set PATROL_TEST_PG_PORT to it"
        fi
        log "postgresql: creating cluster ${version} main on port ${PG_PORT}"
        pg_createcluster "$version" main -p "$PG_PORT" >&2
        cluster="${version} main"
    fi

    log "postgresql: starting stopped cluster ${cluster} (stopped again at exit)"
    # shellcheck disable=SC2086 # "VERSION NAME" splits into two arguments on purpose
    pg_ctlcluster --skip-systemctl-redirect ${cluster} start >&2 ||
        die "could not start PostgreSQL cluster ${cluster} (see /var/log/postgresql/)"
    PG_STARTED_CLUSTER="$cluster"

    local waited_s=0
    until pg_reachable; do
        ((waited_s < PG_START_TIMEOUT_S)) ||
            die "PostgreSQL cluster ${cluster} started but ${PG_HOST}:${PG_PORT} does not answer"
        sleep 1
        waited_s=$((waited_s + 1))
    done
}

# create_private_database: exports PATROL_TEST_PG_URL (a SQLAlchemy URL).
create_private_database() {
    local suffix password
    suffix="$(random_hex 12)"
    password="$(random_hex 24)"
    # Names are "patrol_test_" + hex: valid unquoted identifiers, nothing to escape.
    pg_admin_psql "CREATE ROLE patrol_test_${suffix} LOGIN PASSWORD '${password}'" >&2 ||
        die "could not create a PostgreSQL role (set PATROL_TEST_PG_ADMIN_URL to a superuser URL if this server is not the local Debian cluster)"
    PG_ROLE="patrol_test_${suffix}"
    pg_admin_psql "CREATE DATABASE patrol_test_${suffix} OWNER patrol_test_${suffix}" >&2 ||
        die "could not create PostgreSQL database patrol_test_${suffix}"
    PG_DATABASE="patrol_test_${suffix}"
    export PATROL_TEST_PG_URL="postgresql+psycopg://${PG_ROLE}:${password}@${PG_HOST}:${PG_PORT}/${PG_DATABASE}"
}

# Drop the private database and role, and stop the cluster if this run
# started it. Safe to call more than once.
drop_private_database() {
    if [[ -n "$PG_DATABASE" ]]; then
        # WITH (FORCE): a test that leaked a connection must not keep the database alive.
        pg_admin_psql "DROP DATABASE IF EXISTS ${PG_DATABASE} WITH (FORCE)" >&2 ||
            log "WARNING: could not drop PostgreSQL database ${PG_DATABASE}"
        PG_DATABASE=""
    fi
    if [[ -n "$PG_ROLE" ]]; then
        pg_admin_psql "DROP ROLE IF EXISTS ${PG_ROLE}" >&2 ||
            log "WARNING: could not drop PostgreSQL role ${PG_ROLE}"
        PG_ROLE=""
    fi
    if [[ -n "$PG_STARTED_CLUSTER" ]]; then
        # shellcheck disable=SC2086
        pg_ctlcluster --skip-systemctl-redirect ${PG_STARTED_CLUSTER} stop >&2 ||
            log "WARNING: could not stop PostgreSQL cluster ${PG_STARTED_CLUSTER}"
        PG_STARTED_CLUSTER=""
    fi
}
