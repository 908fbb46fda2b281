"""What an agent may add must be readable with the repository's key: garbage cannot get in.

Append-only keeps an intruder from deleting or replacing objects, but adding is allowed, and an
added file of the wrong kind could still hurt a restore: an index or snapshot file that does not
decrypt stops restic (and e3backup) loading the repository, and twenty junk key files sorted
before the real one hide it from restic's key search. So the gateway checks every non-data
upload against the repository, with the job's repository password (sealed in the database, as the
maintenance worker uses it):

- ``keys/<id>``: must open with the job's repository password, to the repository's master key
  (the first key, at creation, to any master key);
- ``config``, ``index``, ``snapshots``, ``locks``: must decrypt (Poly1305 MAC) with the master key.

Data packs are not checked: a pack is only read through an index entry, and the index is checked.
The master key is derived once per repository and kept in a small cache (derived from the
database; any replica derives the same).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict

from ..errors import E3Error, RepoError
from ..repo.crypto import Key, MacError
from ..repo.keys import open_key_file, search_key
from ..store.base import FileType, Handle, Store

MAX_N = 1 << 20  # restic makes N=32768 (r=8, p=1); e3backup the same


class Invalid(Exception):
    """The upload is not readable with the repository's key; the message says which and why."""


class MasterKeys:
    """Master keys by (job, password digest), least recently used dropped; thread-safe."""

    def __init__(self, size: int = 256) -> None:
        self._keys: OrderedDict[tuple[int, str], Key] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get(self, job_id: int, store: Store, password: bytes) -> Key | None:
        """The repository's master key; None while it has no key file that opens (being created)."""
        slot = (job_id, hashlib.sha256(password).hexdigest())
        with self._lock:
            key = self._keys.get(slot)
            if key is not None:
                self._keys.move_to_end(slot)
                return key
        try:
            _, key = search_key(store, password)
        except RepoError:
            return None
        with self._lock:
            self._keys[slot] = key
            while len(self._keys) > self._size:
                self._keys.popitem(last=False)
        return key


def check_upload(h: Handle, data: bytes, master: Key | None, password: bytes) -> None:
    """Raise ``Invalid`` unless ``data`` may be stored as ``h`` in a repository keyed ``master``."""
    if h.type is FileType.PACK:
        return
    if h.type is FileType.KEY:
        try:
            doc = json.loads(data)
            costly = int(doc["N"]) > MAX_N or int(doc["r"]) > 32 or int(doc["p"]) > 16
        except (ValueError, KeyError, TypeError) as e:
            raise Invalid(f"{h} refused: not a key file ({e})") from e
        if costly:  # a key that would make the server spend gigabytes deriving it
            raise Invalid(f"{h} refused: its scrypt parameters are over the gateway's limit (N <= {MAX_N})")
        try:
            key = open_key_file(data, password, h.name)
        except E3Error as e:
            raise Invalid(f"{h} refused: it does not open with the job's repository password ({e})") from e
        if master is not None and key.to_json() != master.to_json():
            raise Invalid(f"{h} refused: it opens to another master key than the repository's")
        return
    if master is None:
        raise Invalid(f"{h} refused: the repository has no key file that opens with the job's repository password "
                      "yet (save a key first), or the agent's repository password is not the job's")
    try:
        master.open(data)
    except MacError as e:
        raise Invalid(f"{h} refused: it does not decrypt with the repository's key (not written by this "
                      "repository's owner)") from e


__all__ = ["Invalid", "MasterKeys", "check_upload"]
