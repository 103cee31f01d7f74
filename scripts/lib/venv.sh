# shellcheck shell=bash
# The project's virtual environment: create or reuse .venv, install the
# project only when its declared dependencies changed.
# Sourced by scripts/test; needs common.sh and debian.sh.

# True when "$1" is a Python interpreter of version 3.11 or newer.
python_is_recent() {
    "$1" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null
}

# Print the first Python 3.11+ on PATH.
find_python() {
    local candidate
    for candidate in python3.13 python3.12 python3.11 python3; do
        if command -v "$candidate" >/dev/null && python_is_recent "$candidate"; then
            command -v "$candidate"
            return 0
        fi
    done
    return 1
}

# ensure_venv REPO_ROOT: leaves a working .venv with the project installed.
ensure_venv() {
    local root="$1"
    local venv="${root}/.venv"
    local stamp_file="${venv}/.patrol-install-stamp"
    local python lock_fd

    # Several runs may start at once (people in parallel worktrees, or one
    # person with two terminals): one creates and installs, the others wait.
    # The lock file lives outside the work tree, named after the venv's path.
    exec {lock_fd}>"${TMPDIR:-/tmp}/patrol-venv-$(printf '%s' "$venv" | sha256sum | cut -c1-16).lock"
    flock "$lock_fd"

    if ! [[ -x "${venv}/bin/python" ]] || ! python_is_recent "${venv}/bin/python"; then
        if ! python="$(find_python)" || ! "$python" -c 'import ensurepip, venv' 2>/dev/null; then
            # Debian's python3 ships venv's ensurepip separately.
            ensure_debian_packages "$PIN_PYTHON3_VENV"
            python="$(find_python)" || die "no Python 3.11+ found, even after installing python3-venv"
        fi
        log "creating .venv with ${python} ($("$python" --version 2>&1))"
        rm -rf "$venv"
        "$python" -m venv "$venv"
    fi

    # The stamp records what the last successful install was made from: the
    # dependency declarations and the interpreter. Anything else (editing the
    # project's own modules) needs no reinstall, thanks to the editable install.
    local want
    want="$(cat "${root}/pyproject.toml" "${root}/constraints.txt" | sha256sum | cut -d' ' -f1) $("${venv}/bin/python" --version 2>&1)"
    if [[ "$(cat "$stamp_file" 2>/dev/null)" != "$want" ]]; then
        log "installing the project into .venv (pyproject.toml or constraints.txt changed)"
        (cd "$root" && "${venv}/bin/python" -m pip install --disable-pip-version-check -q \
            -c constraints.txt -e ".[dev]") >&2
        printf '%s\n' "$want" >"$stamp_file"
    else
        log "reusing .venv (dependencies unchanged since the last install)"
    fi
    flock --unlock "$lock_fd"
    exec {lock_fd}>&-
}
