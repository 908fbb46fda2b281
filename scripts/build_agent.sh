#!/usr/bin/env bash
# Builds the single-file agent executable (PyInstaller, docs/packaging.md) into DIST (default dist/):
#     scripts/build_agent.sh [DIST]
# The sources are copied to a staging directory with the build stamp (e3backup/_build.py) and
# built from there: the checkout is left as it is. E3BACKUP_BUILD_VERSION stamps another version.
# PYTHON: the interpreter whose environment has e3backup's dependencies and PyInstaller
# (default .venv/bin/python, made by scripts/setup.sh). WORK: PyInstaller's cache directory
# (a second build with the same WORK reuses its analysis where nothing changed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dist="$(realpath -m "${1:-$root/dist}")"
py="${PYTHON:-$root/.venv/bin/python}"
work="${WORK:-$(mktemp -d)}"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage/src" "$dist"
cp -a "$root/src/e3backup" "$stage/src/"
find "$stage/src" -name __pycache__ -prune -exec rm -rf {} +
rm -f "$stage/src/e3backup/_build.py"
if ! ls "$stage/src/e3backup/"_sha256mb*.so >/dev/null 2>&1; then
  # not built in place (a fresh checkout): build the optional extension for the executable
  (cd "$root" && "$py" setup.py -q build_ext --build-lib "$stage/src" --build-temp "$stage/tmp" >/dev/null) \
    || echo "build_agent: the SHA-256 extension did not build; the agent uses hashlib" >&2
fi
"$py" "$root/packaging/stamp_build.py" "$stage/src/e3backup/_build.py"
cp "$root/packaging/e3backup-agent.spec" "$root/packaging/e3backup_main.py" "$stage/"
(cd "$stage" && E3BACKUP_STAGE_SRC="$stage/src" "$py" -m PyInstaller --noconfirm --log-level WARN \
  --distpath "$dist" --workpath "$work" e3backup-agent.spec)
"$dist/e3backup" version
