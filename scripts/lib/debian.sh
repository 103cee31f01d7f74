# shellcheck shell=bash
# Debian packages: install what is missing, at pinned versions.
# Sourced by scripts/test; needs common.sh.

# Versions pinned to Debian 12 (bookworm) so every machine runs the same
# servers. Update them together when Debian publishes a point release.
# PostgreSQL is pinned to Debian 12's major version (15); the glob accepts its
# security updates, which replace the older build in the archive.
readonly PIN_MOSQUITTO="mosquitto=2.0.11-1.2+deb12u2"
readonly PIN_INFLUXDB="influxdb=1.6.7~rc0-1+b13"
readonly PIN_VICTORIA_METRICS="victoria-metrics=1.79.5+ds1-2+b5"
readonly PIN_POSTGRESQL="postgresql=15+248*"
# pdftotext and pdftoppm: the monthly report tests read and render the PDF with
# poppler, independently of reportlab which wrote it.
readonly PIN_POPPLER_UTILS="poppler-utils=22.12.0-2*"
# Headless Chromium for the web console's browser tests (Playwright drives the
# system browser: Playwright's own download needs the internet). Not pinned to
# a version: Debian ships Chromium through bookworm-security only, and each
# update removes the previous build from the archive. fonts-liberation gives
# screenshots the metric-compatible fonts the console's CSS names.
readonly PIN_CHROMIUM="chromium"
readonly PIN_FONTS_LIBERATION="fonts-liberation=1:1.07.4-11"
# Only when no Python 3.11+ with venv support exists (a bare Debian 12).
readonly PIN_PYTHON3_VENV="python3-venv=3.11.2-1+b1"

APT_UPDATED=""

# True when a Debian package is installed (not merely known or half-removed).
debian_package_installed() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" == "installed" ]]
}

# ensure_debian_packages NAME=VERSION...: install the ones not installed yet.
# Packages already installed are left alone, whatever their version, so a
# machine whose administrator runs these services keeps its own. Service
# starts during installation are the package's business; our tests always use
# private instances on other ports.
ensure_debian_packages() {
    local spec missing=()
    for spec in "$@"; do
        debian_package_installed "${spec%%=*}" || missing+=("$spec")
    done
    ((${#missing[@]} > 0)) || return 0

    command -v apt-get >/dev/null ||
        die "missing packages ${missing[*]} and no apt-get: install them by hand"
    ((EUID == 0)) ||
        die "missing packages ${missing[*]}: run as root, or install them first with apt-get"

    if [[ -z "$APT_UPDATED" ]]; then
        log "apt-get update (once, before installing)"
        apt-get update -q -o DPkg::Lock::Timeout=300 >&2
        APT_UPDATED=1
    fi
    log "installing Debian packages: ${missing[*]}"
    # Lock::Timeout: wait for another apt run (e.g. a parallel test run) instead of failing.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o DPkg::Lock::Timeout=300 \
        "${missing[@]}" >&2
}

# One line per package with the version actually installed, for the log.
report_debian_versions() {
    local line
    while read -r line; do
        log "  debian: ${line}"
    done < <(dpkg-query -W -f='${Package} ${Version}\n' "$@" 2>/dev/null)
}
