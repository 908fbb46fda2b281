#!/usr/bin/env bash
# Builds the Debian packages e3backup-agent and e3backup-server with dpkg-deb (docs/packaging.md):
#     scripts/build_debs.sh [--version 0.1.0-1] [--agent-exe FILE] [--wheel FILE] [--out DIR] [--only agent|server]
# --agent-exe: the single-file agent (default: built by scripts/build_agent.sh);
# --wheel: the e3backup wheel (default: built by python -m build). The server's virtualenv is made
# with the target's Python (/usr/bin/python3, Debian's) and the wheel's dependencies from the
# package index, in a staging directory, then moved under /opt/e3backup-server in the package
# (its scripts' paths rewritten; byte-code compiled by the postinst on the target).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
target_py="${TARGET_PYTHON:-/usr/bin/python3}"
version="" agent_exe="" wheel="" out="$root/dist" only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --version) version="$2"; shift 2 ;;
    --agent-exe) agent_exe="$2"; shift 2 ;;
    --wheel) wheel="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    *) echo "build_debs: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$version" ] || version="$("$py" -c 'from e3backup.buildinfo import version; print(version())')-1"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
arch="$(dpkg --print-architecture)"
maint="e3backup maintainers <e3backup@localhost>"

copy_scripts() {  # DEBIAN dir, source dir
  for f in postinst prerm postrm; do install -m 0755 "$2/$f" "$1/$f"; done
}

build_agent() {
  if [ -z "$agent_exe" ]; then
    bash "$root/scripts/build_agent.sh" "$tmp/agent-dist" >/dev/null
    agent_exe="$tmp/agent-dist/e3backup"
  fi
  local pkg="$tmp/e3backup-agent"
  install -d "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/usr/share/doc/e3backup-agent"
  install -m 0755 "$agent_exe" "$pkg/usr/bin/e3backup"
  install -m 0644 "$root/packaging/e3backup-agent.service" "$pkg/lib/systemd/system/"
  install -m 0644 "$root/docs/agent.md" "$root/docs/packaging.md" "$pkg/usr/share/doc/e3backup-agent/"
  copy_scripts "$pkg/DEBIAN" "$root/packaging/debian/agent"
  cat > "$pkg/DEBIAN/control" <<CONTROL
Package: e3backup-agent
Version: $version
Architecture: $arch
Maintainer: $maint
Depends: libc6 (>= 2.36)
Recommends: systemd
Section: admin
Priority: optional
Installed-Size: $(du -sk "$pkg" | cut -f1)
Description: e3backup agent: backups of files, disks and VMs for an e3backup server
 The single-file agent (no Python needed) and its systemd unit. Enroll the machine with
 "e3backup agent enroll --server URL", then the unit runs "e3backup agent run".
CONTROL
  dpkg-deb --root-owner-group -Zgzip -z1 --build "$pkg" "$out/e3backup-agent_${version}_${arch}.deb" >/dev/null
  echo "$out/e3backup-agent_${version}_${arch}.deb"
}

build_server() {
  if [ -z "$wheel" ]; then
    "$py" -m build --wheel --outdir "$tmp/wheel" "$root" >/dev/null
    wheel="$(ls "$tmp"/wheel/e3backup-*.whl)"
  fi
  local pkg="$tmp/e3backup-server" venv=/opt/e3backup-server
  install -d "$pkg/DEBIAN" "$pkg/opt" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/etc/e3backup" \
    "$pkg/usr/share/doc/e3backup-server"
  "$target_py" -m venv "$pkg$venv"
  "$pkg$venv/bin/python" -m pip install -q --no-compile --disable-pip-version-check "$wheel"
  # the virtualenv lives at $venv on the target: scripts and activate name the staging path
  grep -rlI --null "$pkg$venv" "$pkg$venv/bin" | xargs -0 -r sed -i "s#$pkg$venv#$venv#g"
  find "$pkg$venv" -name __pycache__ -type d -prune -exec rm -rf {} +
  ln -s "$venv/bin/e3backup" "$pkg/usr/bin/e3backup-server"
  install -m 0644 "$root/packaging/e3backup-server.service" "$pkg/lib/systemd/system/"
  install -m 0640 "$root/packaging/debian/server/server.env" "$pkg/etc/e3backup/server.env"
  install -m 0644 "$root/docs/server.md" "$root/docs/deploy.md" "$root/docs/packaging.md" \
    "$pkg/usr/share/doc/e3backup-server/"
  copy_scripts "$pkg/DEBIAN" "$root/packaging/debian/server"
  echo "/etc/e3backup/server.env" > "$pkg/DEBIAN/conffiles"
  local pyver
  pyver="$("$target_py" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
  cat > "$pkg/DEBIAN/control" <<CONTROL
Package: e3backup-server
Version: $version
Architecture: $arch
Maintainer: $maint
Depends: python3 (>= $pyver), python3 (<< ${pyver%.*}.$(( ${pyver#*.} + 1 ))), adduser | passwd
Recommends: systemd
Suggests: postgresql
Section: admin
Priority: optional
Installed-Size: $(du -sk "$pkg" | cut -f1)
Description: e3backup control-plane server and dashboard
 A virtualenv under /opt/e3backup-server with e3backup and its dependencies, the systemd unit,
 data in /var/lib/e3backup/server (SQLite by default), migrations run on every upgrade.
CONTROL
  dpkg-deb --root-owner-group -Zgzip -z1 --build "$pkg" "$out/e3backup-server_${version}_${arch}.deb" >/dev/null
  echo "$out/e3backup-server_${version}_${arch}.deb"
}

[ "$only" = "server" ] || build_agent
[ "$only" = "agent" ] || build_server
