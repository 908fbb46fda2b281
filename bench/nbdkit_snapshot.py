"""nbdkit Python plugin serving an image snapshot: the peer ``bench/instant.py`` measures our own
NBD server against (``docs/instant.md``: why we kept our own).

    nbdkit -U SOCK python bench/nbdkit_snapshot.py repo=PATH snapshot=ID venv=.venv
    (password from E3BACKUP_PASSWORD)

It runs inside nbdkit's embedded interpreter (Debian's python3.11), so it adds the project's
virtualenv to the path first; the disk is the same ``SnapshotDisk`` (blob cache, read-ahead) the
``image serve`` command serves.
"""

# mypy: ignore-errors
import glob
import os
import site

import nbdkit  # type: ignore[import-not-found]  # provided by nbdkit-plugin-python

API_VERSION = 2
_conf: dict[str, str] = {}
_disk = None


def config(key, value):
    _conf[key] = value


def config_complete():
    global _disk
    for sp in glob.glob(os.path.join(_conf["venv"], "lib", "python3*", "site-packages")):
        site.addsitedir(sp)
    from e3backup.instant.disk import SnapshotDisk
    from e3backup.repo.repository import Repository
    from e3backup.sources.stored_image import image_snapshots, load_image_snapshot
    from e3backup.store import LocalStore

    repo = Repository.open(LocalStore(_conf["repo"]), os.environ["E3BACKUP_PASSWORD"].encode())
    repo.load_index()
    snap = repo.find_snapshot(_conf.get("snapshot", "latest"), filter=image_snapshots())
    _disk = SnapshotDisk(repo, load_image_snapshot(repo, snap))


def thread_model():
    return nbdkit.THREAD_MODEL_PARALLEL


def open(readonly):
    return 1


def get_size(h):
    return _disk.size


def can_write(h):
    return False


def can_multi_conn(h):
    return True


def can_extents(h):
    return True


def pread(h, buf, offset, flags):
    pos = 0
    for _, data, n in _disk.read(offset, len(buf)):
        buf[pos : pos + n] = bytes(n) if data is None else data
        pos += n


def extents(h, count, offset, flags):
    out, at = [], offset
    for n, state in _disk.extents(offset, count):
        out.append((at, n, state))
        at += n
    return out
