"""Key files (``keys/<id>``): the master key sealed with a password-derived user key (spec 2.3).

A key file is plain JSON; its ``data`` field is ``seal(user_key, master_key_json)``, the user
key being ``scrypt(password, salt, N, r, p, 64)``. A MAC failure means a wrong password.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import IntegrityError, RepoError, WrongPasswordError
from ..store.base import FileType, Handle, Store
from .crypto import Key, MacError
from .timefmt import format_ns, now_ns

SALT_SIZE = 64
DEFAULT_N = 32768
DEFAULT_R = 8
DEFAULT_P = 1
MAX_KEYS_TRIED = 20


@dataclass(frozen=True)
class KDFParams:
    n: int = DEFAULT_N
    r: int = DEFAULT_R
    p: int = DEFAULT_P

    def check(self) -> None:
        if self.n < 2 or self.n & (self.n - 1) or self.r < 1 or self.p < 1 or self.r * self.p >= 2**30:
            raise IntegrityError(f"invalid scrypt parameters N={self.n} r={self.r} p={self.p}")


def derive_user_key(
    password: bytes, salt: bytes, params: KDFParams, meanwhile: Callable[[], object] | None = None
) -> Key:
    """scrypt; with ``meanwhile``, scrypt runs in a thread (it releases the GIL) and ``meanwhile``
    runs on the calling thread until it is done: a command's imports then cost no time."""
    params.check()
    maxmem = 128 * params.n * params.r * params.p + 64 * 1024 * 1024

    def derive() -> bytes:
        return hashlib.scrypt(password, salt=salt, n=params.n, r=params.r, p=params.p, dklen=64, maxmem=maxmem)

    if meanwhile is None:
        return Key.from_bytes(derive())
    got: list[bytes | BaseException] = []

    def run() -> None:
        try:
            got.append(derive())
        except BaseException as e:  # handed to the calling thread
            got.append(e)

    worker = threading.Thread(target=run, name="scrypt", daemon=True)
    worker.start()
    try:
        meanwhile()
    finally:
        worker.join()
    if isinstance(got[0], BaseException):
        raise got[0]
    return Key.from_bytes(got[0])


def master_key_json(master: Key) -> bytes:
    return json.dumps(master.to_json(), separators=(",", ":")).encode()


def make_key_file(password: bytes, master: Key, params: KDFParams | None = None) -> bytes:
    """The bytes of a new key file for ``master`` opened by ``password``."""
    params = params or KDFParams()
    salt = os.urandom(SALT_SIZE)
    user = derive_user_key(password, salt, params)
    doc = {
        "created": format_ns(now_ns()),
        "username": _username(),
        "hostname": socket.gethostname(),
        "kdf": "scrypt",
        "N": params.n,
        "r": params.r,
        "p": params.p,
        "salt": base64.b64encode(salt).decode(),
        "data": base64.b64encode(user.seal(master_key_json(master))).decode(),
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def add_key(store: Store, password: bytes, master: Key, params: KDFParams | None = None) -> str:
    data = make_key_file(password, master, params)
    key_id = hashlib.sha256(data).hexdigest()
    store.save(Handle(FileType.KEY, key_id), data)
    return key_id


def open_key_file(data: bytes, password: bytes, name: str = "", meanwhile: Callable[[], object] | None = None) -> Key:
    """Open one key file; ``WrongPasswordError`` on a MAC failure, ``IntegrityError`` if malformed.
    ``meanwhile`` runs while the key is derived (see `derive_user_key`)."""
    try:
        doc = json.loads(data)
        if doc.get("kdf") != "scrypt":
            raise IntegrityError(f"key {name}: only supported KDF is scrypt()")
        salt = base64.b64decode(doc["salt"], validate=True)
        sealed = base64.b64decode(doc["data"], validate=True)
        params = KDFParams(int(doc["N"]), int(doc["r"]), int(doc["p"]))
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise IntegrityError(f"key {name}: malformed key file: {e}") from e
    if len(salt) != SALT_SIZE:
        raise IntegrityError(f"key {name}: salt is {len(salt)} bytes, expected {SALT_SIZE}")
    user = derive_user_key(password, salt, params, meanwhile)
    try:
        plain = user.open(sealed)
    except MacError as e:
        raise WrongPasswordError("wrong password or no key found") from e
    try:
        return Key.from_json(json.loads(plain))
    except ValueError as e:
        raise IntegrityError(f"key {name}: master key is not JSON") from e


def search_key(store: Store, password: bytes, meanwhile: Callable[[], object] | None = None) -> tuple[str, Key]:
    """Try the key files (at most 20, as restic) until one opens with ``password``; ``meanwhile``
    runs once, while the first key is derived."""
    names = sorted(name for name, _ in store.list(FileType.KEY))
    if not names:
        raise RepoError(f"{store.location}: no key files found (not a repository?)")
    for name in names[:MAX_KEYS_TRIED]:
        data = store.load(Handle(FileType.KEY, name))
        try:
            return name, open_key_file(data, password, name, meanwhile)
        except WrongPasswordError:
            continue
        finally:
            meanwhile = None
    raise WrongPasswordError(f"{store.location}: wrong password or no key found")


def _username() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


__all__ = ["KDFParams", "add_key", "derive_user_key", "make_key_file", "open_key_file", "search_key"]
