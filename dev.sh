#!/usr/bin/env bash
# The README's two commands: `./dev.sh demo` and `./dev.sh test`. Both install what they need
# first (scripts/setup.sh), so they work on a fresh Debian/Ubuntu machine.
set -euo pipefail
cd "$(dirname "$0")"
VENV=${VENV:-.venv}
PY="$VENV/bin/python"

lint() {
  "$PY" proto/generate.py --check
  "$PY" -m ruff check agent controller tests bench proto
  "$PY" -m mypy agent controller
  "$VENV/bin/lint-imports" --no-cache
}

case "${1:-}" in
  setup) bash scripts/setup.sh ;;
  demo) bash scripts/setup.sh; shift; bash scripts/demo.sh "$@" ;;
  test) bash scripts/setup.sh; shift; lint; "$PY" -m pytest -q -p no:cacheprovider tests "$@" ;;
  lint) bash scripts/setup.sh; lint ;;
  bench) bash scripts/setup.sh; shift; "$PY" bench/run_all.py "$@" ;;
  *) echo "usage: ./dev.sh demo|test|lint|bench|setup" >&2; exit 2 ;;
esac
