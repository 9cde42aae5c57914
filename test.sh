#!/usr/bin/env bash
# The whole test suite, from a fresh clone: venv, PM2 from npm, then pytest.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
