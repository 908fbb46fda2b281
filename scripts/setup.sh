#!/usr/bin/env bash
# Sets up everything e3backup needs on a fresh Debian machine: the Debian packages the tests and
# benchmarks use (when missing) and the virtualenv at .venv with the project installed.
# Idempotent and quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

# gcc and python3-dev build the multi-buffer SHA-256 extension (setup.py); rclone judges the sync
# engine's mirrors in tests and, with s3cmd, is its benchmark peer; nbdkit, libnbd-bin (+ python3-libnbd), qemu-system-x86
# and ovmf serve and boot image snapshots (instant restore); busybox-static, extlinux, syslinux-common,
# syslinux-efi, dosfstools, mtools and linux-image-amd64 build the bootable test disks (tests/plugins/bootdisk.py);
# xfsprogs and dosfstools check XFS and FAT partitions in proofs of restore (tests/proof/test_checkers.py)
DEB_PACKAGES=(gcc python3-dev restic qemu-utils e2fsprogs ntfs-3g gdisk borgbackup fuse3 libfuse2 util-linux fdisk python3-libvhdi postgresql chromium rclone s3cmd
  nbdkit nbdkit-plugin-python libnbd-bin python3-libnbd qemu-system-x86 ovmf busybox-static extlinux syslinux-common syslinux-efi dosfstools mtools linux-image-amd64 xfsprogs)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.e3backup-installed
want=$(cat pyproject.toml setup.py src/e3backup/_sha256mb.c | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  echo "$want" > "$stamp"
fi
# An editable install leaves our modules uncompiled; where PYTHONDONTWRITEBYTECODE is set (as on
# these machines) every command would compile them again (~0.1 s a start). Only changed files
# are recompiled.
.venv/bin/python -m compileall -q -j 0 src >/dev/null
