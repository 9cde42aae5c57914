#!/usr/bin/env bash
# The main job on an embedded default: a demo app under its own PM2 is made to hang,
# `recovery check` detects it, restarts it, verifies it, and the event trail is shown.
set -euo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
exec .venv/bin/recovery demo "$@"
