#!/usr/bin/env bash
# Sets everything up, then runs the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy src/e3backup
.venv/bin/mypy --strict --platform win32 src/e3backup  # the Windows agent: docs/windows.md
.venv/bin/python -m pytest "$@"
