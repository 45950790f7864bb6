#!/usr/bin/env bash
# Set up (if needed) and run the demo: embedded tansu broker + Redis, one worker,
# the bundled real Taobao sample replayed, top-10s read back from Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/reco demo "$@"
