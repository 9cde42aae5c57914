#!/usr/bin/env bash
# The whole test suite, from a fresh clone: venv, PM2 from npm, then pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
# Debian packages only the tests need: chromium for the browser test of `recovery serve`
# (tests/test_serve.py), shellcheck for the lint of deploy/ and scripts/ (tests/test_deploy.py),
# groff (groff-base) to render the manual page of `recovery man` (tests/test_man.py).
apt_install chromium shellcheck groff-base || say "without chromium, shellcheck and groff the browser, lint and man tests fail"
exec .venv/bin/python -m pytest "$@"
