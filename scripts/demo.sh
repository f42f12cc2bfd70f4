#!/usr/bin/env bash
# One command: set up medtwin and run the demo (server + sample twins on an embedded SQLite store).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MEDTWIN_EXTRAS=demo bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
exec "$ROOT/.venv/bin/medtwin" demo "$@"
