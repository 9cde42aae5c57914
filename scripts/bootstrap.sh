#!/usr/bin/env bash
# Sourced by ./demo.sh and ./test.sh: makes .venv (the package and its test tools) and a
# private PM2 from npm under .cache/, installing only what is missing. Prints what it does.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Keep in step with PM2_VERSION in tests/conftest.py (used when pytest runs on its own).
PM2_VERSION="${RECOVERY_TEST_PM2_VERSION:-7.0.4}"
VENV="$ROOT/.venv"
PM2_PREFIX="$ROOT/.cache/pm2/$PM2_VERSION"

say() { printf '[bootstrap] %s\n' "$*" >&2; }

find_python() {
    for py in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
        [ -n "$py" ] || continue
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$py"; return 0
        fi
    done
    return 1
}

apt_install() {  # apt_install PACKAGE... : Debian packages, only when missing
    local missing=()
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    command -v apt-get >/dev/null || { say "need Debian packages: ${missing[*]} (no apt-get here)"; return 1; }
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    say "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

ensure_venv() {
    local py stamp want
    py="$(find_python)" || { say "Python 3.11 or later is required"; exit 3; }
    if [ ! -x "$VENV/bin/python" ]; then
        python_has_venv=$("$py" -c 'import ensurepip, venv' 2>/dev/null && echo yes || echo no)
        [ "$python_has_venv" = yes ] || apt_install python3-venv
        say "creating $VENV"
        "$py" -m venv "$VENV"
    fi
    stamp="$VENV/.recovery-installed"
    want="$(sha256sum "$ROOT/pyproject.toml" | cut -c1-16)"
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
        say "installing recovery and its test tools into $VENV"
        local log="$ROOT/.cache/pip-install.log"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "${ROOT}[test]" >"$log" 2>&1 ||
            { cat "$log" >&2; say "pip install failed (log: $log)"; exit 3; }
        echo "$want" >"$stamp"
    fi
}

ensure_pm2() {
    command -v node >/dev/null || { say "Node.js 18 or later is required (node not on PATH)"; exit 3; }
    command -v npm >/dev/null || { say "npm is required to install PM2"; exit 3; }
    if [ ! -x "$PM2_PREFIX/node_modules/.bin/pm2" ]; then
        say "installing pm2@$PM2_VERSION from npm into $PM2_PREFIX"
        local tmp; tmp="$(mktemp -d "$ROOT/.cache/pm2-install.XXXXXX")"
        npm install --no-audit --no-fund --loglevel=error --prefix "$tmp" "pm2@$PM2_VERSION" >/dev/null ||
            { rm -rf "$tmp"; say "npm install pm2@$PM2_VERSION failed"; exit 3; }
        mkdir -p "$(dirname "$PM2_PREFIX")"
        rm -rf "$PM2_PREFIX"; mv "$tmp" "$PM2_PREFIX"
    fi
    export PM2="$PM2_PREFIX/node_modules/.bin/pm2"
    export RECOVERY_TEST_PM2="$PM2"
}

mkdir -p "$ROOT/.cache"
ensure_venv
ensure_pm2
