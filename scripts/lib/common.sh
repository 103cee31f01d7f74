# shellcheck shell=bash
# Logging, timing and small utilities shared by scripts/test and its helpers.
# Sourced, never run: it only defines functions.

# Messages go to stderr so that pytest's closing summary stays the last line
# on stdout.
log() { printf '[%s] %s\n' "${LOG_NAME:-scripts/test}" "$*" >&2; }

die() {
    log "ERROR: $*"
    exit 1
}

# Milliseconds since the epoch, for start-up timings.
now_ms() { date +%s%3N; }

# A random lowercase hex string (default 24 chars = 96 bits) for passwords and
# private database names; hex needs no quoting in SQL, JSON or config files.
random_hex() {
    local length="${1:-24}"
    od -An -N32 -tx1 /dev/urandom | tr -d ' \n' | cut -c "1-${length}"
}

# Print the last lines of a service's log, framed, so a failed start explains itself.
log_tail() {
    local name="$1" file="$2"
    log "---- last 40 lines of ${name} log (${file}) ----"
    if [[ -f "$file" ]]; then
        tail -n 40 "$file" >&2
    else
        log "(no log file)"
    fi
    log "---- end of ${name} log ----"
}
