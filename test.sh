#!/usr/bin/env bash
# The whole test suite, from a fresh clone: venv, PM2 from npm, then pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
# Debian packages only the tests need: chromium for the browser test of `recovery serve`
# (tests/test_serve.py), shellcheck for the lint of deploy/ and scripts/ (tests/test_deploy.py),
# groff (groff-base) to render the manual page of `recovery man` (tests/test_man.py), postgresql
# for the fleet store's tests (tests/postgres.py runs initdb and pg_ctl in a temp folder).
apt_install chromium shellcheck groff-base postgresql ||
    say "without chromium, shellcheck, groff and postgresql the browser, lint, man and fleet tests fail"
# promtool, for the checks of deploy/'s Prometheus files (tests/test_deploy_grafana.py): taken out of
# Debian's prometheus package into .cache/, so no Prometheus service is installed or started.
if ! command -v promtool >/dev/null && [ ! -x .cache/prometheus/usr/bin/promtool ]; then
    say "extracting promtool from Debian's prometheus package into .cache/prometheus"
    (rm -rf .cache/prometheus-deb && mkdir -p .cache/prometheus-deb && cd .cache/prometheus-deb &&
        { apt-get download -qq prometheus >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null && apt-get download -qq prometheus >/dev/null; }; } &&
        dpkg -x prometheus_*.deb ../prometheus) ||
        say "could not get promtool: the promtool checks of tests/test_deploy_grafana.py are skipped"
fi
[ -x .cache/prometheus/usr/bin/promtool ] && export PROMTOOL="$PWD/.cache/prometheus/usr/bin/promtool"
# The wheels recovery depends on, once, for tests/test_packaging.py: it installs the built wheel
# with pipx offline from here (tests talk to loopback only).
WHEELHOUSE=.cache/wheelhouse
if [ ! -f "$WHEELHOUSE/.complete" ] || [ "$(cat "$WHEELHOUSE/.complete")" != "$(sha256sum pyproject.toml | cut -c1-16)" ]; then
    say "downloading recovery's dependencies into $WHEELHOUSE"
    rm -rf "$WHEELHOUSE"
    if .venv/bin/python -m pip wheel -q --disable-pip-version-check -w "$WHEELHOUSE" . >.cache/wheelhouse.log 2>&1; then
        sha256sum pyproject.toml | cut -c1-16 >"$WHEELHOUSE/.complete"
    else
        say "could not fill $WHEELHOUSE (see .cache/wheelhouse.log): the packaging test fails"
    fi
fi
exec .venv/bin/python -m pytest "$@"
