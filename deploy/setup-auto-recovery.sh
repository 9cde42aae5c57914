#!/usr/bin/env bash
# Makes a server self-healing with `recovery`: its own venv, a config, a marked cron block,
# PM2 settings and log rotation, then a checklist that is actually checked. Idempotent.
# Run with --help for the flags.
set -euo pipefail

PROG="setup-auto-recovery"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() {
    cat <<'EOF'
Usage: deploy/setup-auto-recovery.sh --app NAME --url URL [options]

Makes the server self-healing with `recovery`: installs it into its own virtual environment,
writes recovery.toml (never over your edits), adds one marked block to the user's crontab,
writes PM2 settings and log rotation, then checks that it all works (a checklist; exit 1 if
any item fails). Running it twice changes nothing. Every flag can also be given as the
environment variable in brackets.

  --app NAME              the PM2 process name to keep answering [RECOVERY_APP] (required)
  --url URL               what to probe, http:// or https:// [RECOVERY_URL] (required, except
                          with --uninstall)
  --interval 5m           how often cron runs `recovery check`: 1m to 59m, or 1h to 23h;
                          1m at least (for seconds use --with-watch) [RECOVERY_INTERVAL]
  --nightly-restart HH:MM add a cron line restarting the app every day at that time, recorded
                          as `--by schedule --reason nightly` [RECOVERY_NIGHTLY_RESTART]
  --alerts URL...         apprise URLs to notify (several after one flag, or repeat the flag);
                          written to [alerts] urls in recovery.toml, never echoed unredacted
                          [RECOVERY_ALERTS, space-separated]
  --weekly-report EMAIL   mail `recovery report --since 7d` every Monday at 07:00 (needs
                          `mail`, e.g. from mailutils) [RECOVERY_WEEKLY_REPORT]
  --user USER             whose crontab and PM2 (default: you) [RECOVERY_USER]
  --prefix DIR            where the venv, config, store (data/) and logs (logs/) live; default:
                          next to the app, <folder the app runs in>/../recovery-NAME, or
                          ~USER/recovery-NAME when PM2 does not know the app yet [RECOVERY_PREFIX]
  --log-rotation KIND     pm2-logrotate (default: `pm2 install pm2-logrotate`, then retain 7,
                          max_size 10M, compress), logrotate (a file in /etc/logrotate.d; root
                          only) or none [RECOVERY_LOG_ROTATION]
  --pm2-time              turn on PM2's `time` option for the running app now: `pm2 restart
                          NAME --time`, then `pm2 save` (restarts the app once; without it the
                          checklist says how). Timestamped log lines give exact error times;
                          without them a line's time is only bounded [RECOVERY_PM2_TIME=1]
  --with-watch            also install `recovery watch` as a systemd service (detection in
                          seconds; the cron line stays as a backstop; root only) [RECOVERY_WITH_WATCH=1]
  --systemd-timer         run the check from a systemd timer instead of the cron line (the
                          block keeps only the prune, nightly and weekly lines; root only)
                          [RECOVERY_SYSTEMD_TIMER=1]
  --source DIR            the recovery checkout to install (default: the one this script is
                          in) [RECOVERY_SOURCE]
  --dry-run               print every change, make none; exits 0 even when the app, PM2 or
                          the URL are not there yet [RECOVERY_DRY_RUN=1]
  --uninstall             remove exactly what this script added (cron block, venv, wrapper,
                          units, unedited files); keeps the store and the logs [RECOVERY_UNINSTALL=1]
  -h, --help              this text

PM2_HOME is taken from the environment, as pm2 does, and written into the cron wrapper when set.

Example:
  deploy/setup-auto-recovery.sh --app web --url http://127.0.0.1:3000/ --nightly-restart 03:00

Exit codes: 0 done (or dry run), 1 a checklist item failed, 2 bad flag or value, 3 a step failed.
EOF
}

# Not flags: a crontab file instead of `crontab` and the folder standing in for /etc (systemd
# units, logrotate.d) are test hooks; an existing venv instead of an install is what `recovery
# setup` passes (the pip or pipx install it runs from).
CRONTAB_FILE="${RECOVERY_SETUP_CRONTAB:-}"
EXISTING_VENV="${RECOVERY_SETUP_VENV:-}"
ETC="${RECOVERY_SETUP_ETC:-/etc}"

APP="${RECOVERY_APP:-}"
URL="${RECOVERY_URL:-}"
INTERVAL="${RECOVERY_INTERVAL:-5m}"
NIGHTLY="${RECOVERY_NIGHTLY_RESTART:-}"
read -r -a ALERTS <<<"${RECOVERY_ALERTS:-}"
EMAIL="${RECOVERY_WEEKLY_REPORT:-}"
TARGET_USER="${RECOVERY_USER:-}"
PREFIX="${RECOVERY_PREFIX:-}"
LOG_ROTATION="${RECOVERY_LOG_ROTATION:-pm2-logrotate}"
WITH_WATCH="${RECOVERY_WITH_WATCH:-0}"
PM2_TIME="${RECOVERY_PM2_TIME:-0}"
TIMER="${RECOVERY_SYSTEMD_TIMER:-0}"
SOURCE="${RECOVERY_SOURCE:-$(cd "$HERE/.." && pwd)}"
DRY_RUN="${RECOVERY_DRY_RUN:-0}"
UNINSTALL="${RECOVERY_UNINSTALL:-0}"

die() { printf '%s: %s\n' "$PROG" "$(redact "$*")" >&2; exit "${2:-2}"; }
fail() { printf '%s: %s\n' "$PROG" "$(redact "$1")" >&2; exit 3; }
say() { printf '%s\n' "$(redact "$*")"; }
step() { if [ "$DRY_RUN" = 1 ]; then say "would $*"; else say "$*"; fi; }

# Alert URLs carry tokens: every line this script prints goes through here.
redact() {
    local text="$*" url
    for url in "${ALERTS[@]}"; do
        [ -n "$url" ] && text="${text//"$url"/"${url%%://*}://***"}"
    done
    printf '%s' "$text"
}
redact_lines() { while IFS= read -r line || [ -n "$line" ]; do say "$line"; done; }

# --- flags ----------------------------------------------------------------------------------

need_value() { if [ $# -lt 2 ] || [ -z "$2" ] || [ "${2#--}" != "$2" ]; then die "$1 needs a value (see --help)"; fi; }

while [ $# -gt 0 ]; do
    arg="$1"
    case "$arg" in
        --*=*) set -- "${arg%%=*}" "${arg#*=}" "${@:2}"; continue ;;
    esac
    case "$arg" in
        -h|--help) usage; exit 0 ;;
        --app) need_value "$@"; APP="$2"; shift 2 ;;
        --url) need_value "$@"; URL="$2"; shift 2 ;;
        --interval) need_value "$@"; INTERVAL="$2"; shift 2 ;;
        --nightly-restart) need_value "$@"; NIGHTLY="$2"; shift 2 ;;
        --weekly-report) need_value "$@"; EMAIL="$2"; shift 2 ;;
        --user) need_value "$@"; TARGET_USER="$2"; shift 2 ;;
        --prefix) need_value "$@"; PREFIX="$2"; shift 2 ;;
        --log-rotation) need_value "$@"; LOG_ROTATION="$2"; shift 2 ;;
        --source) need_value "$@"; SOURCE="$2"; shift 2 ;;
        --alerts)
            need_value "$@"; shift
            while [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; do ALERTS+=("$1"); shift; done ;;
        --with-watch) WITH_WATCH=1; shift ;;
        --pm2-time) PM2_TIME=1; shift ;;
        --systemd-timer) TIMER=1; shift ;;
        --dry-run) DRY_RUN=1; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        *) die "unknown argument '$arg' (see --help)" ;;
    esac
done

# Values land in a crontab and in sh scripts: refuse what would need more quoting than '...'.
plain() { case "$2" in *[\'%\"\\$'\n']*|'') die "$1 '$2' is empty or contains a quote, %, backslash or newline" ;; esac; }

[ -n "$APP" ] || die "--app NAME is required (the PM2 process name; see --help)"
[[ "$APP" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "--app '$APP': use letters, digits, '.', '_' and '-'"
if [ "$UNINSTALL" != 1 ]; then
    [ -n "$URL" ] || die "--url URL is required (what to probe, e.g. http://127.0.0.1:3000/)"
    [[ "$URL" =~ ^https?://[^/?#[:space:]]+([/?#][^[:space:]]*)?$ ]] ||
        die "--url '$URL' is not an http:// or https:// URL with a host"
fi
case "$INTERVAL" in
    [1-9]m|[1-5][0-9]m) MINUTES="${INTERVAL%m}"; [ "$MINUTES" = 1 ] && SCHEDULE="* * * * *" || SCHEDULE="*/$MINUTES * * * *" ;;
    [1-9]h|1[0-9]h|2[0-3]h) HOURS="${INTERVAL%h}"; [ "$HOURS" = 1 ] && SCHEDULE="0 * * * *" || SCHEDULE="0 */$HOURS * * *" ;;
    *[0-9]s|*[0-9]ms) die "--interval '$INTERVAL': cron runs at most once a minute (1m minimum); for seconds add --with-watch" ;;
    *) die "--interval '$INTERVAL': use 1m to 59m or 1h to 23h, e.g. 5m" ;;
esac
if [ -n "$NIGHTLY" ]; then
    [[ "$NIGHTLY" =~ ^([01]?[0-9]|2[0-3]):([0-5][0-9])$ ]] || die "--nightly-restart '$NIGHTLY': use HH:MM, 00:00 to 23:59"
    NIGHTLY_SCHEDULE="$((10#${BASH_REMATCH[2]})) $((10#${BASH_REMATCH[1]})) * * *"
fi
for url in "${ALERTS[@]}"; do
    [[ "$url" =~ ^[A-Za-z][A-Za-z0-9+.-]*://[^[:space:]]+$ ]] ||
        die "--alerts: '${url%%://*}://...' is not an apprise URL (scheme://...)"
done
if [ -n "$EMAIL" ]; then
    [[ "$EMAIL" =~ ^[^@[:space:]\'%\"]+@[^@[:space:]\'%\"]+$ ]] || die "--weekly-report '$EMAIL' is not an email address"
fi
case "$LOG_ROTATION" in pm2-logrotate|logrotate|none) ;; *) die "--log-rotation '$LOG_ROTATION': use pm2-logrotate, logrotate or none" ;; esac
case "$WITH_WATCH$TIMER$DRY_RUN$UNINSTALL$PM2_TIME" in
    *[!01]*) die "RECOVERY_WITH_WATCH, RECOVERY_SYSTEMD_TIMER, RECOVERY_DRY_RUN, RECOVERY_UNINSTALL and RECOVERY_PM2_TIME take 0 or 1" ;;
esac

ME="$(id -un)"
TARGET_USER="${TARGET_USER:-$ME}"
id -u "$TARGET_USER" >/dev/null 2>&1 || die "--user '$TARGET_USER': no such user"
if [ "$TARGET_USER" != "$ME" ] && [ "$(id -u)" -ne 0 ]; then
    die "--user $TARGET_USER: only root can set up another user's crontab and PM2"
fi
if [ "$TARGET_USER" = "$ME" ]; then USER_HOME="${HOME:-$(getent passwd "$ME" | cut -d: -f6)}"; else USER_HOME="$(getent passwd "$TARGET_USER" | cut -d: -f6)"; fi
USER_GROUP="$(id -gn "$TARGET_USER")"
if [ "$(id -u)" -ne 0 ] && [ -z "${RECOVERY_SETUP_ETC:-}" ]; then
    [ "$WITH_WATCH" = 0 ] || die "--with-watch needs root (it writes /etc/systemd/system)"
    [ "$TIMER" = 0 ] || die "--systemd-timer needs root (it writes /etc/systemd/system)"
    [ "$LOG_ROTATION" != logrotate ] || die "--log-rotation logrotate needs root (it writes /etc/logrotate.d)"
fi
if [ -z "$EXISTING_VENV" ]; then  # an existing install (`recovery setup` from pip or pipx) needs no checkout
    if [ ! -f "$SOURCE/pyproject.toml" ] || [ ! -d "$SOURCE/recovery" ]; then die "--source '$SOURCE' is not a recovery checkout"; fi
    SOURCE="$(cd "$SOURCE" && pwd)"
fi

# Runs a command as the target user (with their HOME), the script's user otherwise.
as_user() {
    if [ "$TARGET_USER" = "$ME" ]; then "$@"; else runuser -u "$TARGET_USER" -- env HOME="$USER_HOME" "$@"; fi
}

# --- Python: the tool's own code answers where pm2 is and what PM2 knows --------------------

find_python() {
    local py
    for py in python3.13 python3.12 python3.11 python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
            command -v "$py"; return 0
        fi
    done
    return 1
}
SYSTEM_PYTHON="$(find_python)" || die "Python 3.11 or later is required (python3 on PATH)" 3

# tool COMMAND ARGS...: recovery's helpers, from the venv once it exists, else from the checkout.
tool() {
    if [ -x "${VENV:-/nonexistent}/bin/python" ]; then
        as_user "$VENV/bin/python" -c "$TOOL_PY" "$@"
    else
        as_user env PYTHONPATH="$SOURCE" "$SYSTEM_PYTHON" -c "$TOOL_PY" "$@"
    fi
}
json_get() { tool json "$1" "$2"; }
TOOL_PY="$(cat <<'PY'
import json, os, sys
from pathlib import Path

command, args = sys.argv[1], sys.argv[2:]
if command == "pm2-bin":  # the pm2 recovery itself would use
    from recovery.errors import RecoveryError
    from recovery.pm2 import find_pm2
    try:
        print(find_pm2())
    except RecoveryError as exc:
        print(exc, file=sys.stderr)
        sys.exit(1)
elif command == "app-info":  # what PM2 says about the app, without starting a PM2 daemon
    from recovery.pm2 import Pm2, pm2_home
    name, pm2 = args
    try:
        pid = int((pm2_home() / "pm2.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        print(json.dumps({"daemon": False}))
        sys.exit(0)
    procs = [p for p in Pm2(Path(pm2)).jlist() if p.get("name") == name]
    env = procs[0].get("pm2_env", {}) if procs else {}
    print(json.dumps({"daemon": True, "known": bool(procs), "status": env.get("status"),
                      "cwd": env.get("pm_cwd"), "script": env.get("pm_exec_path"), "time": bool(env.get("time")),
                      "logs": [env[k] for k in ("pm_out_log_path", "pm_err_log_path") if env.get(k)]}))
elif command == "config":  # the recovery.toml this setup writes
    from recovery.config import sample
    name, url, *alerts = args
    text = sample(url=url, name=name)
    if alerts:
        urls = ", ".join(json.dumps(u, ensure_ascii=False) for u in alerts)
        text += f"\n[alerts]                         # written by setup-auto-recovery.sh --alerts\nurls = [{urls}]\n"
    sys.stdout.write(text)
elif command == "store-writable":
    import sqlite3
    conn = sqlite3.connect(args[0], timeout=5)
    conn.execute("BEGIN IMMEDIATE")
    conn.rollback()
elif command == "store-path":  # the store a config names
    from recovery.config import load
    print(load(Path(args[0])).store.path)
elif command == "module-conf":  # module-conf PM2_HOME KEY: a pm2-logrotate setting as PM2 keeps it
    try:
        conf = json.loads((Path(args[0]) / "module_conf.json").read_text())
    except (OSError, ValueError):
        conf = {}
    print(conf.get("pm2-logrotate", {}).get(args[1], ""))
elif command == "json":  # json DOCUMENT KEY
    value = json.loads(args[0]).get(args[1])
    print("\n".join(value) if isinstance(value, list) else ("" if value is None else value))
PY
)"

# --- what goes where ------------------------------------------------------------------------

BEGIN_MARK="# BEGIN recovery $APP"
END_MARK="# END recovery $APP"

crontab_read() {
    if [ -n "$CRONTAB_FILE" ]; then
        cat "$CRONTAB_FILE" 2>/dev/null || true
    elif command -v crontab >/dev/null 2>&1; then
        if [ "$TARGET_USER" = "$ME" ]; then crontab -l 2>/dev/null || true; else crontab -u "$TARGET_USER" -l 2>/dev/null || true; fi
    fi
}

crontab_write() {  # the new crontab on stdin
    if [ -n "$CRONTAB_FILE" ]; then
        cat >"$CRONTAB_FILE.tmp" && mv "$CRONTAB_FILE.tmp" "$CRONTAB_FILE"
    elif [ "$TARGET_USER" = "$ME" ]; then
        crontab -
    else
        crontab -u "$TARGET_USER" -
    fi
}

crontab_where() { if [ -n "$CRONTAB_FILE" ]; then echo "$CRONTAB_FILE"; else echo "$TARGET_USER's crontab"; fi; }

# The crontab with our block replaced by the file $1 (empty file: removed); appended if absent.
crontab_with_block() {
    crontab_read | awk -v begin="$BEGIN_MARK" -v end="$END_MARK" -v block="$1" '
        function put() { while ((getline line < block) > 0) print line; done = 1 }
        $0 == begin { skip = 1; if (!done) put(); next }
        skip && $0 == end { skip = 0; next }
        !skip { print }
        END { if (!done) put() }'
}

has_block() { local text; text="$(crontab_read)"; grep -qxF "$BEGIN_MARK" <<<"$text"; }

# The prefix an earlier run recorded in the block, so re-runs and --uninstall find it.
recorded_prefix() {
    local text; text="$(crontab_read)"
    awk -v b="$BEGIN_MARK" -v e="$END_MARK" '$0 == b { on = 1; next } $0 == e { on = 0 } on && sub(/^# prefix /, "") { print; exit }' <<<"$text"
}

PM2_BIN="$(tool pm2-bin 2>/dev/null)" || PM2_BIN=""
APP_INFO='{"daemon": false}'
if [ -n "$PM2_BIN" ]; then APP_INFO="$(tool app-info "$APP" "$PM2_BIN" 2>/dev/null)" || APP_INFO='{"daemon": false}'; fi
APP_CWD="$(json_get "$APP_INFO" cwd)"

if [ -z "$PREFIX" ]; then
    PREFIX="$(recorded_prefix)"
    if [ -z "$PREFIX" ] && [ -n "$APP_CWD" ]; then PREFIX="$(dirname "$APP_CWD")/recovery-$APP"; fi
    PREFIX="${PREFIX:-$USER_HOME/recovery-$APP}"
fi
case "$PREFIX" in /*) ;; *) PREFIX="$PWD/$PREFIX" ;; esac
PREFIX="${PREFIX%/}"
plain --prefix "$PREFIX"
case "$PREFIX" in *[[:space:]]*) die "--prefix '$PREFIX' contains whitespace (it goes into a crontab line)" ;; esac

VENV="${EXISTING_VENV:-$PREFIX/venv}"
RECOVERY="$VENV/bin/recovery"
CONFIG="$PREFIX/recovery.toml"
WRAPPER="$PREFIX/bin/recovery-cron"
CRON_LOG="$PREFIX/logs/recovery-cron.log"
LOCK="$PREFIX/run/check.lock"
MANIFEST="$PREFIX/.setup-manifest"
UNITS="$ETC/systemd/system"
LOGROTATE_FILE="$ETC/logrotate.d/recovery-$APP"

# --- the manifest: what this script added, so --uninstall removes exactly that -------------
# Lines "KIND<TAB>SHA<TAB>PATH": file (ours), user (ours until edited: removed only unchanged),
# dir (removed whole), pm2-module, unit (a systemd unit to stop and remove).

declare -A OWNED=()
if [ -f "$MANIFEST" ]; then
    while IFS=$'\t' read -r kind sha path; do [ -n "$path" ] && OWNED["$path"]="$kind"$'\t'"$sha"; done <"$MANIFEST"
fi
own() { OWNED["$3"]="$1"$'\t'"$2"; }
sha() { if [ -f "$1" ]; then sha256sum "$1" | cut -c1-64; fi; }

write_manifest() {
    local path tmp="$MANIFEST.tmp"
    for path in "${!OWNED[@]}"; do printf '%s\t%s\n' "${OWNED[$path]}" "$path"; done | sort -t$'\t' -k3 >"$tmp"
    mv "$tmp" "$MANIFEST"
}

# show_diff OLD NEW LABEL: a unified diff, alert tokens redacted (also those already in a
# config, which --alerts did not name).
show_diff() {
    diff -u --label "$3" --label "$3 (new)" "$1" "$2" | sed 1,2d |
        sed -E '/^[-+ ][[:space:]]*urls[[:space:]]*=/ s#://[^"'"'"']*#://***#g' | redact_lines || true
}

# put FILE MODE KIND CONTENT. KIND "file": kept in step with the template; "user": written
# only when absent, else the difference is shown and the user's file kept. (Not fed through a
# pipe: that would run it in a subshell and lose the manifest entry.)
put() {
    local file="$1" mode="$2" kind="$3" new
    new="$(mktemp)"
    printf '%s\n' "$4" >"$new"
    if [ -f "$file" ] && cmp -s "$file" "$new"; then
        rm -f "$new"; return 0
    fi
    if [ -f "$file" ] && [ "$kind" = user ]; then
        say "kept $file (yours); this run would change it like so:"
        show_diff "$file" "$new" "$file"
        rm -f "$new"; return 0
    fi
    if [ -f "$file" ]; then step "update $file:"; else step "write $file:"; fi
    show_diff "$( [ -f "$file" ] && echo "$file" || echo /dev/null)" "$new" "$file"
    if [ "$DRY_RUN" = 1 ]; then rm -f "$new"; return 0; fi
    mkdir -p "$(dirname "$file")"
    chmod "$mode" "$new"
    mv "$new" "$file"
    own "$kind" "$(sha "$file")" "$file"
}

render() {  # render TEMPLATE: the template with @APP@, @PREFIX@, @USER@, @GROUP@, @INTERVAL@ filled in
    local text
    text="$(cat "$HERE/$1")"
    text="${text//@APP@/"$APP"}"
    text="${text//@PREFIX@/"$PREFIX"}"
    text="${text//@USER@/"$TARGET_USER"}"
    text="${text//@GROUP@/"$USER_GROUP"}"
    text="${text//@INTERVAL@/"$INTERVAL"}"
    printf '%s\n' "$text"
}

# --- uninstall ------------------------------------------------------------------------------

systemd_up() { [ -d /run/systemd/system ] && [ -z "${RECOVERY_SETUP_ETC:-}" ]; }

uninstall() {
    local block path kind sha
    say "uninstalling recovery for $APP from $PREFIX (the store in data/ and the logs in logs/ stay)"
    block="$(mktemp)"
    if has_block; then
        step "remove the '$BEGIN_MARK' block from $(crontab_where)"
        [ "$DRY_RUN" = 1 ] || crontab_with_block "$block" | crontab_write
    fi
    rm -f "$block"
    for path in "${!OWNED[@]}"; do
        IFS=$'\t' read -r kind sha <<<"${OWNED[$path]}"
        case "$kind" in
            unit)
                step "stop and remove $path"
                if [ "$DRY_RUN" = 0 ]; then
                    if systemd_up; then systemctl disable --now "$(basename "$path")" >/dev/null 2>&1 || true; fi
                    rm -f "$path"
                    if systemd_up; then systemctl daemon-reload || true; fi
                fi ;;
            pm2-module)
                step "pm2 uninstall $path (this script installed it)"
                [ "$DRY_RUN" = 1 ] || [ -z "$PM2_BIN" ] || as_user "$PM2_BIN" uninstall "$path" >/dev/null 2>&1 || true ;;
            dir) step "remove $path"; [ "$DRY_RUN" = 1 ] || rm -rf "$path" ;;
            user)
                if [ -f "$path" ] && [ "$(sha "$path")" != "$sha" ]; then
                    say "kept $path: edited since this script wrote it"
                else
                    step "remove $path"; [ "$DRY_RUN" = 1 ] || rm -f "$path"
                fi ;;
            *) step "remove $path"; [ "$DRY_RUN" = 1 ] || rm -f "$path" ;;
        esac
    done
    if [ "$DRY_RUN" = 0 ]; then
        rm -f "$MANIFEST"
        rmdir "$PREFIX/bin" "$PREFIX/run" "$PREFIX" 2>/dev/null || true
    fi
    say "done; kept: $PREFIX/data (the event store) and $PREFIX/logs"
}

if [ "$UNINSTALL" = 1 ]; then
    uninstall
    exit 0
fi

# --- install --------------------------------------------------------------------------------

say "recovery for $APP ($URL), every $INTERVAL, in $PREFIX, as $TARGET_USER$([ "$DRY_RUN" = 1 ] && echo '; dry run: nothing is changed')"
if [ -z "$PM2_BIN" ]; then
    [ "$DRY_RUN" = 1 ] || die "pm2 not found on PATH nor in nvm's or npm's folders for $TARGET_USER; install it (npm install -g pm2) or put it on PATH" 3
    say "note: pm2 not found for $TARGET_USER (a real run stops here)"
elif [ "$(json_get "$APP_INFO" daemon)" != True ]; then
    say "note: no PM2 daemon runs for $TARGET_USER (PM2_HOME ${PM2_HOME:-$USER_HOME/.pm2}); nothing was asked of it"
elif [ "$(json_get "$APP_INFO" known)" != True ]; then
    say "note: PM2 has no process named '$APP' yet"
fi
[ "$DRY_RUN" = 1 ] || command -v crontab >/dev/null 2>&1 || [ -n "$CRONTAB_FILE" ] ||
    die "crontab not found: install cron (apt-get install cron) and run this again" 3

if [ "$DRY_RUN" = 0 ]; then
    mkdir -p "$PREFIX/bin" "$PREFIX/logs" "$PREFIX/data" "$PREFIX/run"
    [ -f "$MANIFEST" ] || : >"$MANIFEST"
    own dir - "$PREFIX/run"
else
    for d in "$PREFIX" "$PREFIX/logs" "$PREFIX/data"; do [ -d "$d" ] || step "create $d"; done
fi

# The venv: reinstalled only when the checkout changed since the last install.
source_stamp() {
    (cd "$SOURCE" && find pyproject.toml recovery cli -type f \( -name '*.py' -o -name '*.js' -o -name '*.toml' \) -print0 |
        sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
}
if [ -n "$EXISTING_VENV" ]; then
    [ -x "$RECOVERY" ] || die "RECOVERY_SETUP_VENV=$EXISTING_VENV has no bin/recovery" 3
else
    STAMP="$(source_stamp)"
    if [ "$(cat "$VENV/.recovery-source" 2>/dev/null || true)" != "$STAMP" ] || [ ! -x "$RECOVERY" ]; then
        step "install recovery from $SOURCE into $VENV (its own venv, $("$SYSTEM_PYTHON" --version))"
        if [ "$DRY_RUN" = 0 ]; then
            [ -x "$VENV/bin/python" ] || "$SYSTEM_PYTHON" -m venv "$VENV" || fail "could not create the venv $VENV (apt-get install python3-venv?)"
            "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$SOURCE" >"$PREFIX/logs/pip-install.log" 2>&1 ||
                fail "pip install $SOURCE failed; see $PREFIX/logs/pip-install.log"
            echo "$STAMP" >"$VENV/.recovery-source"
            own dir - "$VENV"
        fi
    fi
fi

# recovery.toml: yours once written.
put "$CONFIG" 0600 user "$(tool config "$APP" "$URL" "${ALERTS[@]}")"

# The cron wrapper: cron's environment is nearly empty (PATH=/usr/bin:/bin), so it sets PATH
# with the folder pm2 (and nvm's node beside it) was found in; recovery also searches nvm's
# and npm's folders itself. It also caps the cron log: the watcher must not fill the disk.
PM2_DIR=""
[ -z "$PM2_BIN" ] || PM2_DIR="$(dirname "$PM2_BIN")"
CRON_PATH="${PM2_DIR:+$PM2_DIR:}/usr/local/bin:/usr/bin:/bin"
WRAPPER_TEXT="$(
    cat <<EOF
#!/bin/sh
# Written by deploy/setup-auto-recovery.sh: runs \`recovery ARGS\` for $APP with the environment
# cron lacks. --stamp first: each output line starts with the run's UTC start time (for the cron log).
PATH='$CRON_PATH'
RECOVERY_CONFIG='$CONFIG'
export PATH RECOVERY_CONFIG
EOF
    if [ -n "${PM2_HOME:-}" ]; then printf "PM2_HOME='%s'\nexport PM2_HOME\n" "$PM2_HOME"; fi
    cat <<EOF
log='$CRON_LOG'
# Over 5 MB: keep one old copy and start again (the cron line appends, so truncating is safe).
if [ -f "\$log" ] && [ "\$(wc -c <"\$log")" -gt 5242880 ]; then cp -f "\$log" "\$log.1" && : >"\$log"; fi
cd '$PREFIX' || exit 3
if [ "\${1:-}" != --stamp ]; then exec '$RECOVERY' "\$@"; fi
shift
now=\$(date -u +%Y-%m-%dT%H:%M:%SZ)
out=\$('$RECOVERY' "\$@" 2>&1)
code=\$?
[ -z "\$out" ] || printf '%s\\n' "\$out" | while IFS= read -r line; do printf '%s %s\\n' "\$now" "\$line"; done
exit \$code
EOF
)"
put "$WRAPPER" 0755 file "$WRAPPER_TEXT"

# The cron block.
q() { printf "'%s'" "$1"; }
CHECK_CMD="$(command -v flock || echo /usr/bin/flock) -n $(q "$LOCK") $(q "$WRAPPER") --stamp check --trigger cron"
BLOCK="$(mktemp)"
{
    echo "$BEGIN_MARK"
    echo "# Written by setup-auto-recovery.sh; re-running it replaces this block, --uninstall removes it."
    echo "# prefix $PREFIX"
    [ "$TIMER" = 1 ] || echo "$SCHEDULE $CHECK_CMD >> $(q "$CRON_LOG") 2>&1"
    # Raw error entries older than [logs] keep_raw go, as a recorded step; templates and counts stay.
    echo "17 4 * * * $(q "$WRAPPER") --stamp errors prune >> $(q "$CRON_LOG") 2>&1"
    if [ -n "$NIGHTLY" ]; then
        echo "$NIGHTLY_SCHEDULE $(q "$WRAPPER") --stamp restart $APP --by schedule --reason nightly >> $(q "$CRON_LOG") 2>&1"
    fi
    if [ -n "$EMAIL" ]; then
        echo "0 7 * * 1 $(q "$WRAPPER") report --since 7d 2>&1 | mail -s $(q "recovery weekly report: $APP on $(hostname)") $EMAIL >> $(q "$CRON_LOG") 2>&1"
    fi
    echo "$END_MARK"
} >"$BLOCK"
OLD_CRONTAB="$(mktemp)"; NEW_CRONTAB="$(mktemp)"
crontab_read >"$OLD_CRONTAB"
crontab_with_block "$BLOCK" >"$NEW_CRONTAB"
if ! cmp -s "$OLD_CRONTAB" "$NEW_CRONTAB"; then
    step "install the cron block in $(crontab_where):"
    show_diff "$OLD_CRONTAB" "$NEW_CRONTAB" "crontab"
    [ "$DRY_RUN" = 1 ] || crontab_write <"$NEW_CRONTAB"
fi
rm -f "$BLOCK" "$OLD_CRONTAB" "$NEW_CRONTAB"

# PM2: an ecosystem file to adopt (the running app is left as it is), and log rotation.
APP_SCRIPT="$(json_get "$APP_INFO" script)"
eco="$(render ecosystem.config.js)"
eco="${eco//@SCRIPT@/"${APP_SCRIPT:-/path/to/your/server.js}"}"
eco="${eco//@CWD@/"${APP_CWD:-/path/to/your/app}"}"
put "$PREFIX/ecosystem.config.js" 0644 user "$eco"

pm2_run() { as_user env PATH="$PM2_DIR:$PATH" "$PM2_BIN" "$@"; }
case "$LOG_ROTATION" in
    pm2-logrotate)
        if [ -z "$PM2_BIN" ]; then
            say "note: pm2-logrotate not set up (no pm2)"
        else
            if [ ! -d "${PM2_HOME:-$USER_HOME/.pm2}/modules/pm2-logrotate" ]; then
                step "pm2 install pm2-logrotate (from npm)"
                if [ "$DRY_RUN" = 0 ]; then
                    pm2_run install pm2-logrotate >"$PREFIX/logs/pm2-install.log" 2>&1 ||
                        fail "pm2 install pm2-logrotate failed; see $PREFIX/logs/pm2-install.log (or use --log-rotation logrotate)"
                    own pm2-module - pm2-logrotate
                fi
            fi
            for kv in retain=7 max_size=10M compress=true; do
                key="${kv%%=*}"; value="${kv#*=}"
                if [ "$(tool module-conf "${PM2_HOME:-$USER_HOME/.pm2}" "$key")" != "$value" ]; then
                    step "pm2 set pm2-logrotate:$key $value"
                    [ "$DRY_RUN" = 1 ] || pm2_run set "pm2-logrotate:$key" "$value" >/dev/null ||
                        fail "pm2 set pm2-logrotate:$key $value failed"
                fi
            done
        fi ;;
    logrotate)
        logs="$PREFIX/logs/*.log"
        while IFS= read -r f; do [ -n "$f" ] && logs="$logs $f"; done <<<"$(json_get "$APP_INFO" logs)"
        lr="$(render logrotate.conf)"
        put "$LOGROTATE_FILE" 0644 file "${lr//@LOGS@/"$logs"}" ;;
esac

# PM2's `time` option: each log line starts with its time, so error times are exact (without it,
# recovery bounds a line's time by when it was read and by the file's mtime).
if [ "$PM2_TIME" = 1 ] && [ -n "$PM2_BIN" ] && [ "$(json_get "$APP_INFO" known)" = True ] &&
    [ "$(json_get "$APP_INFO" time)" != True ]; then
    step "pm2 restart $APP --time && pm2 save (timestamps in $APP's log lines)"
    if [ "$DRY_RUN" = 0 ]; then
        if ! { pm2_run restart "$APP" --time >/dev/null && pm2_run save >/dev/null; }; then
            fail "pm2 restart $APP --time failed (turn it on later: pm2 restart $APP --time && pm2 save)"
        fi
    fi
fi

# systemd_install UNIT TEMPLATE...: write the units (UNIT-NAME from each recovery-NAME template),
# then (re)start UNIT when systemd runs here and a unit changed or UNIT is not active.
systemd_install() {
    local unit="$1" template dest before="" after=""
    shift
    for template in "$@"; do
        dest="$UNITS/${template%%.*}-$APP.${template#*.}"
        before+="$(sha "$dest")"
        put "$dest" 0644 file "$(render "$template")"
        [ "$DRY_RUN" = 1 ] || OWNED["$dest"]="unit"$'\t'"$(sha "$dest")"
        after+="$(sha "$dest")"
    done
    if systemd_up && { [ "$before" != "$after" ] || ! systemctl is-active -q "$unit"; }; then
        step "systemctl enable --now $unit (restarted when its unit changed)"
        if [ "$DRY_RUN" = 0 ] && ! { systemctl daemon-reload && systemctl enable -q "$unit" && systemctl restart "$unit"; }; then
            fail "could not start $unit; see: journalctl -u $unit"
        fi
    fi
}
[ "$WITH_WATCH" = 0 ] || systemd_install "recovery-watch-$APP.service" recovery-watch.service
[ "$TIMER" = 0 ] || systemd_install "recovery-check-$APP.timer" recovery-check.service recovery-check.timer

if [ "$DRY_RUN" = 1 ]; then
    say "dry run: nothing was changed"
    exit 0
fi
write_manifest
if [ "$TARGET_USER" != "$ME" ]; then chown -R "$TARGET_USER:$USER_GROUP" "$PREFIX"; fi

# --- the checklist: each item checked, not printed ------------------------------------------

FAILED=0
ok() { say "  ✓ $*"; }
bad() { say "  ✗ $*"; FAILED=1; }
# The cron line's command, run as cron runs it: PATH=/usr/bin:/bin, SHELL=/bin/sh, HOME.
as_cron() { as_user env -i HOME="$USER_HOME" LOGNAME="$TARGET_USER" USER="$TARGET_USER" SHELL=/bin/sh PATH=/usr/bin:/bin /bin/sh -c "$1"; }

say ""
say "checklist:"
CURRENT="$(crontab_read)"
if [ "$TIMER" = 1 ]; then
    if systemd_up && systemctl is-active -q "recovery-check-$APP.timer"; then ok "recovery-check-$APP.timer is active"
    else bad "recovery-check-$APP.timer is not active (systemd is not running here?): systemctl status recovery-check-$APP.timer"; fi
elif has_block && grep -qF "$WRAPPER' --stamp check" <<<"$CURRENT"; then
    ok "cron block '$BEGIN_MARK' in $(crontab_where), every $INTERVAL"
else
    bad "no cron block in $(crontab_where): is cron installed and may $TARGET_USER use it (/etc/cron.allow)?"
fi
if out="$(as_user "$RECOVERY" config validate "$CONFIG" 2>&1)"; then
    ok "recovery config validate: $out"
else
    bad "recovery config validate failed: $(printf '%s' "$out" | head -n 3 | tr '\n' ' ')— fix $CONFIG and run this again"
fi
if out="$(as_cron "${CHECK_CMD/--trigger cron/--trigger manual}" 2>&1)"; then
    # its lines are stamped; the first is the Nagios status line, then one per app
    ok "recovery check, run as cron runs it: $(printf '%s\n' "$out" | sed -n '2,$s/^[^ ]* //p' | tr '\n' ' ')"
else
    code=$?
    bad "recovery check as cron runs it exited $code: ${out:-no output (another check holds $LOCK?)} — is $URL right and the app up?"
fi
STORE="$(tool store-path "$CONFIG" 2>/dev/null || echo "$PREFIX/data/recovery.db")"
if [ -f "$STORE" ] && tool store-writable "$STORE" 2>/dev/null; then
    ok "store $STORE is writable"
else
    bad "store $STORE is not writable by $TARGET_USER: check its folder's owner and free space"
fi
INFO="$( [ -n "$PM2_BIN" ] && tool app-info "$APP" "$PM2_BIN" 2>/dev/null || echo '{}')"
if [ "$(json_get "$INFO" known)" = True ]; then
    ok "PM2 knows $APP (status $(json_get "$INFO" status), pm2 $PM2_BIN)"
    if [ "$(json_get "$INFO" time)" = True ]; then
        ok "PM2 timestamps $APP's log lines (time: true): error times are exact"
    else  # a note, not a failure: recovery still bounds each line's time
        say "note: $APP's log lines carry no timestamps (PM2's \`time\` is off), so error times are only bounded;" \
            "turn it on: pm2 restart $APP --time && pm2 save (or run this with --pm2-time, or adopt $PREFIX/ecosystem.config.js)"
    fi
else
    bad "PM2 (PM2_HOME ${PM2_HOME:-$USER_HOME/.pm2}) has no process named '$APP': start it (pm2 start $PREFIX/ecosystem.config.js) or fix --app"
fi
if [ ${#ALERTS[@]} -gt 0 ]; then
    if ! as_user "$RECOVERY" alert --help >/dev/null 2>&1; then
        bad "alerts configured but this recovery has no \`alert test\` command: update recovery, then run \`recovery alert test\`"
    elif out="$(as_cron "$(q "$WRAPPER") alert test" 2>&1)"; then
        ok "alerts test-sent: $(printf '%s' "$out" | tail -n 1)"
    else
        bad "recovery alert test failed: $(printf '%s' "$out" | tail -n 1) — check the --alerts URLs"
    fi
fi
if [ -n "$EMAIL" ]; then
    if PATH=/usr/bin:/bin command -v mail >/dev/null; then ok "mail is there for the weekly report to $EMAIL"
    else bad "no \`mail\` on cron's PATH for the weekly report: apt-get install mailutils"; fi
fi
if [ "$WITH_WATCH" = 1 ]; then
    if systemd_up && systemctl is-active -q "recovery-watch-$APP.service"; then ok "recovery-watch-$APP is running"
    else bad "recovery-watch-$APP is not running (systemd is not running here?): journalctl -u recovery-watch-$APP"; fi
fi
say ""
if [ "$FAILED" = 0 ]; then
    if [ "$TIMER" = 1 ]; then say "all set: a systemd timer runs \`recovery check\` every $INTERVAL"
    else say "all set: cron runs \`recovery check\` every $INTERVAL; its output goes to $CRON_LOG"; fi
else
    say "some items failed (✗): fix them and run this again (it changes only what differs)"
fi
exit "$FAILED"
