#!/usr/bin/env bash
# Set up (if needed) and run the whole test suite: unit tests and integration tests
# on a real embedded broker and Redis that the suite starts and stops itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q --timeout=600 -p no:cacheprovider "$@"
