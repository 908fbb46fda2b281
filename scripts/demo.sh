#!/usr/bin/env bash
# Sets everything up, then runs the main job on the embedded defaults: a real backup of a sample
# tree into a local repository, a restore, and a byte-for-byte comparison, with restic as judge.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m e3backup.demo "$@"
