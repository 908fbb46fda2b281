#!/usr/bin/env bash
# Sets everything up, then runs the main job on the embedded defaults: server, agent, a files job
# (Full, Incremental), a restore command and a byte-for-byte comparison, with restic as judge.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m e3backup.demo "$@"
