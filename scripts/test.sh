#!/usr/bin/env bash
# Sets everything up, then runs the linters and the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/mypy src/e3backup
.venv/bin/mypy --strict --platform win32 src/e3backup  # the Windows agent: docs/windows.md
# Three workers on two cores: most tests wait on restic, S3, QEMU or Chromium rather than compute.
# A file's tests stay on one worker (they share module fixtures). E3BACKUP_TEST_WORKERS=0 runs serially.
.venv/bin/python -m pytest -n "${E3BACKUP_TEST_WORKERS:-3}" --dist loadfile "$@"
