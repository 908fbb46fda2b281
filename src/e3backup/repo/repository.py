"""The repository: a store plus the master key, config and index (restic v2 format).

``Repository.init`` creates one; ``Repository.open`` finds the key for a password. Reads verify
everything (MAC, zstd length, SHA-256) and name the blob and pack at fault. Writes go through a
``BlobWriter`` (packs, then index) and ``save_snapshot`` last, so an interrupted command never
leaves a snapshot that points at missing data.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING, Any

from ..errors import (
    AlreadyExistsError,
    BlobNotFoundError,
    E3Error,
    IntegrityError,
    LockError,
    NotFoundError,
    RepoError,
    RepositoryNotFoundError,
    UsageError,
)
from ..store.base import FileType, Handle, Store
from . import unpacked
from .blob import BlobType
from .cache import Cache
from .compression import decompress, decompress_into, decompressed_sha256
from .config import Config
from .crypto import Key, MacError
from .hashing import sha256_many
from .keys import KDFParams, add_key, search_key
from .leftovers import remove_temporaries
from .lock import Lock, list_locks
from .node import Node
from .pack import PackedBlob, read_header
from .snapshot import Snapshot
from .tree import decode_tree, encode_tree
from .writer import DEFAULT_PACK_SIZE, BlobWriter

if TYPE_CHECKING:
    from .master_index import MasterIndex

log = logging.getLogger(__name__)


class Repository:
    def __init__(self, store: Store, key: Key, config: Config, key_id: str = "") -> None:
        self.store = store
        self.key = key
        self.config = config
        self.key_id = key_id
        # Imported here: the index brings numpy (~20 MiB of RSS), and `open` derives the key
        # (scrypt, 32 MiB for a moment) before this runs, so the two do not add up in the peak.
        from .master_index import MasterIndex

        self.index: MasterIndex = MasterIndex()
        self.cache: Cache | None = None
        self.index_files: list[str] = []
        self.pack_size = DEFAULT_PACK_SIZE
        self._temporaries_swept = False

    # -- opening ------------------------------------------------------------------------------

    @classmethod
    def init(cls, store: Store, password: bytes, kdf: KDFParams | None = None) -> Repository:
        """Create a new v2 repository; refuses if one exists at the location, or an empty password."""
        _refuse_empty(password)
        try:
            store.stat(Handle(FileType.CONFIG))
            raise AlreadyExistsError(f"{store.location}: repository already exists (config file present)")
        except NotFoundError:
            pass
        store.create()
        master = Key.random()
        config = Config.new()
        key_id = add_key(store, password, master, kdf)
        store.save(Handle(FileType.CONFIG), config.seal(master))
        return cls(store, master, config, key_id)

    @classmethod
    def open(cls, store: Store, password: bytes, meanwhile: Callable[[], object] | None = None) -> Repository:
        """Open with a password: finds the key, reads and checks the config. ``meanwhile`` runs
        on this thread while the key is derived (`derive_user_key`)."""
        _refuse_empty(password)
        try:
            store.stat(Handle(FileType.CONFIG))
        except NotFoundError as e:
            raise RepositoryNotFoundError(f"{store.location}: no repository here (config file not found)") from e
        key_id, key = search_key(store, password, meanwhile)
        sealed = store.load(Handle(FileType.CONFIG))
        try:
            config = Config.parse(key.open(sealed))
        except MacError as e:
            raise IntegrityError(f"{store.location}: config file is corrupt (MAC mismatch)") from e
        return cls(store, key, config, key_id)

    @property
    def version(self) -> int:
        return self.config.version

    def lock(
        self,
        exclusive: bool = False,
        meanwhile: Callable[[], object] | None = None,
        on_conflict: Callable[[LockError], None] | None = None,
    ) -> Lock:
        """A lock to use in a ``with`` block; ``meanwhile`` runs during its re-check delay, or,
        with ``on_conflict``, the re-check runs in the background (see `Lock`)."""
        return Lock(self.store, self.key, exclusive, self.version, meanwhile=meanwhile, on_conflict=on_conflict)

    def close(self) -> None:
        self.store.close()

    # -- unpacked files -----------------------------------------------------------------------

    def save_unpacked(self, t: FileType, doc: Any) -> str:
        file_id, sealed = unpacked.encode(self.key, doc, self.version)
        self.store.save(Handle(t, file_id), sealed)
        if self.cache is not None and t in (FileType.INDEX, FileType.SNAPSHOT):
            self.cache.put(t, file_id, sealed)
        return file_id

    def load_unpacked(self, t: FileType, file_id: str) -> Any:
        cache = self.cache if t in (FileType.INDEX, FileType.SNAPSHOT) else None
        if cache is not None:
            data = cache.get(t, file_id)
            if data is not None:
                try:
                    return unpacked.decode(self.key, data, file_id, _WHAT[t], self.version)
                except IntegrityError:
                    cache.remove(t, file_id)  # damaged copy: fetch it again
        data = self.store.load(Handle(t, file_id))
        doc = unpacked.decode(self.key, data, file_id, _WHAT[t], self.version)
        if cache is not None:
            cache.put(t, file_id, data)
        return doc

    def cached_tree_pack(self, pack_id: str, data: bytes) -> None:
        """Keep a copy of a pack of tree blobs (called by the writer after uploading one)."""
        if self.cache is not None:
            self.cache.put(FileType.PACK, pack_id, data)

    def _load_tree_range(self, pack_id: str, blob: PackedBlob) -> bytes:
        cache = self.cache
        assert cache is not None
        data = cache.get(FileType.PACK, pack_id, blob.offset, blob.length)
        if data is not None:
            return data
        whole = self.store.load(Handle(FileType.PACK, pack_id))
        if hashlib.sha256(whole).hexdigest() == pack_id:
            cache.put(FileType.PACK, pack_id, whole)
        return whole[blob.offset : blob.offset + blob.length]

    def list_ids(self, t: FileType) -> list[str]:
        return [name for name, _ in self.store.list(t)]

    # -- index --------------------------------------------------------------------------------

    def load_index(self, workers: int = 4, on_error: Callable[[str, E3Error], None] | None = None) -> None:
        """Load every index file into memory (in parallel). Errors raise unless ``on_error``.

        Workers decrypt and parse a file into columns (``IndexColumns``), so at most ``workers``
        decoded JSON documents exist at a time; the index sorts everything once at the end.
        """
        from .index import IndexColumns

        names = self.list_ids(FileType.INDEX)
        if self.cache is not None:
            self.cache.keep_only(FileType.INDEX, set(names))

        def load(name: str) -> IndexColumns | E3Error:
            try:
                return IndexColumns.from_json(self.load_unpacked(FileType.INDEX, name), name)
            except E3Error as e:
                return e

        todo = iter(names)
        with ThreadPoolExecutor(max_workers=workers) as ex:
            running = deque((name, ex.submit(load, name)) for name in islice(todo, workers))
            while running:
                name, fut = running.popleft()
                nxt = next(todo, None)
                if nxt is not None:
                    running.append((nxt, ex.submit(load, nxt)))
                res = fut.result()
                if isinstance(res, E3Error):
                    if on_error is None:
                        raise res
                    on_error(name, res)
                    continue
                self.index_files.append(name)
                self.index.add_index_columns(res)
        self.index.compact()

    def adopt_unindexed_packs(self) -> int:
        """Index packs that an interrupted run stored but never indexed; returns how many.

        Only safe when no other live process may be writing, so it is skipped when another
        non-stale lock exists. Each pack's header is read (one tail read) and checked.
        """
        others = [lk for lk in list_locks(self.store, self.key, self.version) if not lk.is_stale()]
        if len(others) > 1:
            return 0
        from .index import IndexPack, split_into_files

        found = []
        for name, size in self.store.list(FileType.PACK):
            if self.index.has_pack(name):
                continue
            try:
                blobs = read_header(self.store, self.key, name, size)
            except E3Error as e:
                log.warning("ignoring unreadable unindexed pack %s: %s", name, e)
                continue
            found.append(IndexPack(name, blobs))
        for f in split_into_files(found):
            self.save_unpacked(FileType.INDEX, f.to_json())
        for p in found:
            self.index.add_pack(p.id, p.blobs)
        return len(found)

    # -- blobs --------------------------------------------------------------------------------

    def remove_abandoned_temporaries(self) -> None:
        """Once per opened repository, before its first write: remove the temporary files that
        killed processes of this host left (``leftovers``)."""
        if not self._temporaries_swept:
            self._temporaries_swept = True
            remove_temporaries(self.store)

    def writer(self, connections: int = 2, pack_size: int | None = None, spill: bool = False) -> BlobWriter:
        return BlobWriter(self, pack_size or self.pack_size, connections, spill=spill)

    def decode_blob(self, pack_id: str, blob: PackedBlob, sealed: bytes | memoryview) -> bytes:
        """Decrypt, decompress and verify one blob read from a pack."""
        plain = self._open_blob(pack_id, blob, sealed)
        if blob.uncompressed_length:
            try:
                plain = decompress(plain, blob.uncompressed_length)
            except IntegrityError as e:
                raise IntegrityError(f"{_what(pack_id, blob)}: {e}") from e
        _check_id(pack_id, blob, hashlib.sha256(plain).digest())
        return plain

    def open_blob_into(
        self, pack_id: str, blob: PackedBlob, sealed: bytes | memoryview, out: memoryview, scratch: memoryview
    ) -> memoryview:
        """Decrypt (MAC checked) and decompress one blob into the caller's buffers: the plaintext
        ends up at the start of ``out`` (returned, sliced to its length); ``scratch`` holds a
        compressed blob between decryption and decompression. Each must be at least
        ``blob.length`` (resp. the plaintext length) + 15 bytes. The plaintext's SHA-256 is not
        checked here: callers check many blobs together with ``check_blob_ids`` before trusting them."""
        size = blob.plaintext_length
        if len(out) < size + 15:
            raise ValueError(f"output buffer of {len(out)} bytes is too small for {_what(pack_id, blob)}")
        try:
            if not blob.uncompressed_length:
                return self.key.open_into(sealed, out)
            plain = out[:size]
            decompress_into(self.key.open_into(sealed, scratch), plain)
            return plain
        except MacError as e:
            raise IntegrityError(f"{_what(pack_id, blob)}: ciphertext verification failed (corrupt data)") from e
        except IntegrityError as e:
            raise IntegrityError(f"{_what(pack_id, blob)}: {e}") from e

    def verify_blob(self, pack_id: str, blob: PackedBlob, sealed: bytes | memoryview) -> None:
        """Check a blob as ``decode_blob`` does, but decompress and hash it in pieces: prune copies
        blobs sealed, and a whole plaintext (up to 8 MiB a chunk) would only add to its peak memory."""
        plain = self._open_blob(pack_id, blob, sealed)
        if not blob.uncompressed_length:
            _check_id(pack_id, blob, hashlib.sha256(plain).digest())
            return
        try:
            digest = decompressed_sha256(plain, blob.uncompressed_length)
        except IntegrityError as e:
            raise IntegrityError(f"{_what(pack_id, blob)}: {e}") from e
        _check_id(pack_id, blob, digest)

    def _open_blob(self, pack_id: str, blob: PackedBlob, sealed: bytes | memoryview) -> bytes:
        try:
            return self.key.open(sealed)
        except MacError as e:
            raise IntegrityError(f"{_what(pack_id, blob)}: ciphertext verification failed (corrupt data)") from e
        except IntegrityError as e:
            raise IntegrityError(f"{_what(pack_id, blob)}: {e}") from e

    def load_blob(self, blob_type: BlobType, blob_id: bytes) -> bytes:
        loc = self.index.lookup(blob_type, blob_id)
        if loc is None:
            raise BlobNotFoundError(f"{blob_type.json_name} blob {blob_id.hex()} not found in index")
        b = loc.blob
        if blob_type is BlobType.TREE and self.cache is not None:
            try:
                return self.decode_blob(loc.pack_id, b, self._load_tree_range(loc.pack_id, b))
            except IntegrityError:
                self.cache.remove(FileType.PACK, loc.pack_id)  # damaged copy: read from the store
            except NotFoundError:
                pass
        try:
            sealed = self.store.load(Handle(FileType.PACK, loc.pack_id), b.offset, b.length)
        except NotFoundError as e:
            raise IntegrityError(f"{blob_type.json_name} blob {blob_id.hex()}: pack {loc.pack_id} is missing") from e
        if len(sealed) != b.length:
            raise IntegrityError(f"{blob_type.json_name} blob {blob_id.hex()}: pack {loc.pack_id} is truncated")
        return self.decode_blob(loc.pack_id, b, sealed)

    def load_tree(self, tree_id: bytes) -> list[Node]:
        return decode_tree(self.load_blob(BlobType.TREE, tree_id), tree_id.hex())

    def save_tree(self, writer: BlobWriter, nodes: list[Node]) -> bytes:
        tree_id, _ = writer.save(BlobType.TREE, encode_tree(nodes))
        return tree_id

    # -- snapshots ----------------------------------------------------------------------------

    def save_snapshot(self, snap: Snapshot) -> str:
        snap.id = self.save_unpacked(FileType.SNAPSHOT, snap.to_json())
        return snap.id

    def load_snapshot(self, snap_id: str) -> Snapshot:
        return Snapshot.from_json(self.load_unpacked(FileType.SNAPSHOT, snap_id), snap_id)

    def snapshots(self, on_error: Callable[[str, E3Error], None] | None = None) -> list[Snapshot]:
        """All snapshots, oldest first."""
        out = []
        names = self.list_ids(FileType.SNAPSHOT)
        if self.cache is not None:
            self.cache.keep_only(FileType.SNAPSHOT, set(names))
        for name in names:
            try:
                out.append(self.load_snapshot(name))
            except E3Error as e:
                if on_error is None:
                    raise
                on_error(name, e)
        out.sort(key=lambda s: (s.time, s.id))
        return out

    def find_snapshot(self, ref: str, filter: Callable[[Snapshot], bool] | None = None) -> Snapshot:
        """A snapshot by full ID, unique prefix, or ``latest``: the newest readable one that
        ``filter`` accepts (an unreadable snapshot file is skipped with a warning naming it)."""
        if ref == "latest":
            snaps = [s for s in self.snapshots(on_error=warn_unreadable_snapshot) if filter is None or filter(s)]
            if not snaps:
                describe = getattr(filter, "describe", None)
                raise RepoError(f"no {describe() if describe else 'snapshot'} found")
            return snaps[-1]
        ref = ref.lower()
        matches = [n for n in self.list_ids(FileType.SNAPSHOT) if n.startswith(ref)]
        if not matches:
            raise RepoError(f"no snapshot matches {ref!r}")
        if len(matches) > 1:
            raise RepoError(f"snapshot prefix {ref!r} is ambiguous ({len(matches)} matches)")
        return self.load_snapshot(matches[0])

    def walk(self, tree_id: bytes, prefix: bytes = b"") -> Iterator[tuple[bytes, Node]]:
        """Depth-first ``(path, node)`` of every node under a tree; paths use ``/``."""
        for node in self.load_tree(tree_id):
            path = prefix + b"/" + node.name
            yield path, node
            if node.type == "dir" and node.subtree is not None:
                yield from self.walk(node.subtree, path)


def warn_unreadable_snapshot(name: str, e: E3Error) -> None:
    """``on_error`` for reads that may skip a snapshot file they cannot read, saying so."""
    log.warning("ignoring unreadable snapshot %s: %s", name, e)


def _refuse_empty(password: bytes) -> None:
    if not password:
        raise UsageError("the repository password is empty: an empty password is refused")


def _what(pack_id: str, blob: PackedBlob) -> str:
    return f"{blob.type.json_name} blob {blob.id.hex()} in pack {pack_id}"


def _check_id(pack_id: str, blob: PackedBlob, digest: bytes) -> None:
    if digest != blob.id:
        raise IntegrityError(f"{_what(pack_id, blob)}: hash mismatch")


def check_blob_ids(blobs: Sequence[tuple[str, PackedBlob, bytes | memoryview]]) -> None:
    """Each ``(pack_id, blob, plaintext)``'s SHA-256 against the blob's ID, hashed together
    (``hashing.sha256_many``); the first mismatch is an ``IntegrityError`` naming blob and pack."""
    for (pack_id, blob, _), digest in zip(blobs, sha256_many([plain for _, _, plain in blobs]), strict=True):
        _check_id(pack_id, blob, digest)


_WHAT = {
    FileType.INDEX: "index",
    FileType.SNAPSHOT: "snapshot",
    FileType.LOCK: "lock",
    FileType.KEY: "key",
    FileType.CONFIG: "config",
    FileType.PACK: "pack",
}

__all__ = ["Repository", "check_blob_ids", "warn_unreadable_snapshot"]
