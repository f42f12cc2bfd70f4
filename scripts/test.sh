#!/usr/bin/env bash
# One command: set up medtwin, start the services the tests need, run lint, types and the whole test suite.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/record -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/services.sh
source "$ROOT/scripts/services.sh"
ensure_packages
bash "$ROOT/scripts/setup.sh"
trap stop_services EXIT
start_postgres
start_mosquitto
find_browser

echo "== ruff" >&2
.venv/bin/ruff check src tests benchmarks examples
echo "== mypy" >&2
.venv/bin/mypy
echo "== mypy --strict (domain packages: numpy/scipy/pydantic only, no store or web)" >&2
.venv/bin/mypy --strict -p medtwin.record -p medtwin.physiology -p medtwin.solve -p medtwin.pharmaco \
  -p medtwin.synthetic -p medtwin.vocab -p medtwin.model -m medtwin.errors
echo "== pytest" >&2
mkdir -p test-artifacts
.venv/bin/pytest -q "$@"
