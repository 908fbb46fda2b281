"""A small NBD server over one `Disk`: fixed newstyle handshake, structured replies, block status.

One thread accepts; each connection has a thread reading requests, which hands them to a shared
pool of workers (reads decrypt blobs, which releases the GIL, so several run at once). Replies
on a connection are sent under its lock, one whole reply at a time. A failing read answers that
request with ``EIO`` and a message naming what broke (the blob, the pack), and the connection
goes on. A client that breaks the protocol is disconnected; the server goes on.

Why a server of our own and not nbdkit's Python plugin: ``docs/instant.md`` (measured).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from ..errors import E3Error
from . import nbdproto as P

log = logging.getLogger("e3backup.instant")

Piece = tuple[int, "bytes | memoryview | None", int]
"""(offset, data, length) of one piece of a read; data None: a hole (reads as zeros)."""


class Disk(Protocol):
    """What an export serves."""

    size: int
    writable: bool

    def read(self, offset: int, length: int) -> list[Piece]: ...

    def extents(self, offset: int, length: int) -> list[tuple[int, int]]:
        """(length, NBD state flags) runs covering [offset, offset + length), in order."""
        ...

    def write(self, offset: int, data: bytes) -> None: ...

    def write_zeroes(self, offset: int, length: int) -> None: ...

    def flush(self) -> None: ...


class _Closed(Exception):
    """The client went away (or broke the protocol): end this connection."""


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    send_lock: threading.Lock
    structured: bool = False
    meta: bool = False  # base:allocation selected (context id 1)
    inflight: int = 0


META_ID = 1
MAX_INFLIGHT = 64
"""Requests of one connection being served at once; the next waits (nbdcopy sends 64)."""


class NbdServer:
    """Serves ``disk`` as one export on the listening socket ``listener`` (already bound).

    Export names accepted: the empty name (the default of qemu and libnbd URIs) and ``name``.
    ``on_error`` hears every request that failed on the disk's side (read errors of the
    repository), for the caller to report."""

    def __init__(
        self,
        disk: Disk,
        listener: socket.socket,
        name: str,
        description: str = "",
        workers: int = 8,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        self.disk = disk
        self.name = name
        self.description = description
        self._listener = listener
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nbd-io")
        self._on_error = on_error
        self._stop = threading.Event()
        self._conns: set[_Conn] = set()
        self._mu = threading.Lock()
        self._thread: threading.Thread | None = None

    # -- life --------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._accept_loop, name="nbd-accept", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop accepting, disconnect every client, wait for the requests in flight."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._mu:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._pool.shutdown(wait=True)

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(sock, threading.Lock())
            with self._mu:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn,), name="nbd-conn", daemon=True).start()

    def _serve(self, conn: _Conn) -> None:
        try:
            if self._handshake(conn):
                self._transmission(conn)
        except _Closed:
            pass
        except OSError as e:
            if not self._stop.is_set():
                log.debug("NBD connection ended: %s", e)
        finally:
            with self._mu:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.sock.close()

    # -- handshake ---------------------------------------------------------------------------

    def _handshake(self, conn: _Conn) -> bool:
        """Negotiate; True when the client entered the transmission phase."""
        sock = conn.sock
        sock.sendall(struct.pack(">QQH", P.INIT_PASSWD, P.IHAVEOPT, P.FLAG_FIXED_NEWSTYLE | P.FLAG_NO_ZEROES))
        (client_flags,) = struct.unpack(">I", _recv(sock, 4))
        if client_flags & ~(P.FLAG_C_FIXED_NEWSTYLE | P.FLAG_C_NO_ZEROES):
            raise _Closed  # unknown client flags: the specification says to close
        no_zeroes = bool(client_flags & P.FLAG_C_NO_ZEROES)
        while True:
            magic, option, length = P.OPTION.unpack(_recv(sock, P.OPTION.size))
            if magic != P.IHAVEOPT or length > P.MAX_OPTION:
                raise _Closed
            data = _recv(sock, length)
            if option == P.OPT_EXPORT_NAME:
                if not self._known(data.decode(errors="replace")):
                    raise _Closed  # the only answer the old option allows
                sock.sendall(struct.pack(">QH", self.disk.size, self._flags()) + (b"" if no_zeroes else bytes(124)))
                return True
            if option == P.OPT_ABORT:
                with contextlib.suppress(OSError):
                    sock.sendall(P.option_reply(option, P.REP_ACK))
                return False
            reply = self._option(conn, option, data)
            sock.sendall(reply)
            if option == P.OPT_GO and reply.endswith(P.option_reply(option, P.REP_ACK)):
                return True

    def _option(self, conn: _Conn, option: int, data: bytes) -> bytes:
        def err(kind: int, message: str) -> bytes:
            return P.option_reply(option, kind, message.encode())

        if option == P.OPT_LIST:
            if data:
                return err(P.REP_ERR_INVALID, "NBD_OPT_LIST takes no data")
            name = self.name.encode()
            return P.option_reply(option, P.REP_SERVER, struct.pack(">I", len(name)) + name) + P.option_reply(
                option, P.REP_ACK
            )
        if option == P.OPT_STRUCTURED_REPLY:
            if data:
                return err(P.REP_ERR_INVALID, "NBD_OPT_STRUCTURED_REPLY takes no data")
            conn.structured = True
            return P.option_reply(option, P.REP_ACK)
        if option in (P.OPT_INFO, P.OPT_GO):
            return self._info(option, data)
        if option in (P.OPT_LIST_META_CONTEXT, P.OPT_SET_META_CONTEXT):
            return self._meta(conn, option, data)
        if option == P.OPT_STARTTLS:
            return err(P.REP_ERR_POLICY, "TLS is not offered: use a unix socket or a trusted network")
        return err(P.REP_ERR_UNSUP, f"option {option} is not supported")

    def _info(self, option: int, data: bytes) -> bytes:
        try:
            (n,) = struct.unpack_from(">I", data)
            name = data[4 : 4 + n].decode()
            (count,) = struct.unpack_from(">H", data, 4 + n)
            wanted = struct.unpack_from(f">{count}H", data, 6 + n)
            if len(data) != 6 + n + 2 * count:
                raise ValueError
        except (struct.error, ValueError, UnicodeDecodeError):
            return P.option_reply(option, P.REP_ERR_INVALID, b"malformed NBD_OPT_INFO/GO request")
        if not self._known(name):
            return P.option_reply(option, P.REP_ERR_UNKNOWN, self._unknown_message(name).encode())
        out = P.option_reply(option, P.REP_INFO, struct.pack(">HQH", P.INFO_EXPORT, self.disk.size, self._flags()))
        if P.INFO_NAME in wanted:
            out += P.option_reply(option, P.REP_INFO, struct.pack(">H", P.INFO_NAME) + self.name.encode())
        if P.INFO_DESCRIPTION in wanted and self.description:
            desc = struct.pack(">H", P.INFO_DESCRIPTION) + self.description.encode()
            out += P.option_reply(option, P.REP_INFO, desc)
        size_info = struct.pack(">HIII", P.INFO_BLOCK_SIZE, 1, 4096, P.MAX_REQUEST)
        return out + P.option_reply(option, P.REP_INFO, size_info) + P.option_reply(option, P.REP_ACK)

    def _meta(self, conn: _Conn, option: int, data: bytes) -> bytes:
        try:
            (n,) = struct.unpack_from(">I", data)
            name = data[4 : 4 + n].decode()
            (count,) = struct.unpack_from(">I", data, 4 + n)
            pos, queries = 8 + n, []
            for _ in range(count):
                (q,) = struct.unpack_from(">I", data, pos)
                queries.append(data[pos + 4 : pos + 4 + q].decode())
                pos += 4 + q
            if pos != len(data):
                raise ValueError
        except (struct.error, ValueError, UnicodeDecodeError):
            return P.option_reply(option, P.REP_ERR_INVALID, b"malformed meta context request")
        if option == P.OPT_SET_META_CONTEXT and not conn.structured:
            msg = b"negotiate structured replies before meta contexts"
            return P.option_reply(option, P.REP_ERR_INVALID, msg)
        if not self._known(name):
            return P.option_reply(option, P.REP_ERR_UNKNOWN, self._unknown_message(name).encode())
        match = any(q in (P.BASE_ALLOCATION, "base:") for q in queries) or (
            option == P.OPT_LIST_META_CONTEXT and not queries
        )
        if option == P.OPT_SET_META_CONTEXT:
            conn.meta = match
        out = b""
        if match:
            out = P.option_reply(option, P.REP_META_CONTEXT, struct.pack(">I", META_ID) + P.BASE_ALLOCATION.encode())
        return out + P.option_reply(option, P.REP_ACK)

    def _known(self, name: str) -> bool:
        return name in ("", self.name)

    def _unknown_message(self, name: str) -> str:
        return f"no export named {name!r}: this server exports {self.name!r} (or the default, empty name)"

    def _flags(self) -> int:
        flags = P.FLAG_HAS_FLAGS | P.FLAG_SEND_DF | P.FLAG_CAN_MULTI_CONN
        if self.disk.writable:
            return flags | P.FLAG_SEND_FLUSH | P.FLAG_SEND_FUA | P.FLAG_SEND_WRITE_ZEROES
        return flags | P.FLAG_READ_ONLY

    # -- transmission ------------------------------------------------------------------------

    def _transmission(self, conn: _Conn) -> None:
        idle = threading.Condition()
        try:
            while True:
                magic, flags, kind, cookie, offset, length = P.REQUEST.unpack(_recv(conn.sock, P.REQUEST.size))
                if magic != P.REQUEST_MAGIC:
                    raise _Closed
                if kind == P.CMD_DISC:
                    return
                data = b""
                if kind == P.CMD_WRITE:
                    if length > P.MAX_REQUEST:
                        raise _Closed  # cannot skip a payload that large safely
                    data = _recv(conn.sock, length)
                with idle:  # back-pressure: a client's requests in flight are bounded (memory)
                    idle.wait_for(lambda: conn.inflight < MAX_INFLIGHT)
                    conn.inflight += 1
                try:
                    self._pool.submit(self._handle, conn, idle, flags, kind, cookie, offset, length, data)
                except RuntimeError:  # the server is closing
                    with idle:
                        conn.inflight -= 1
                    raise _Closed from None
        finally:
            with idle:  # replies of requests in flight are sent before the socket closes
                idle.wait_for(lambda: conn.inflight == 0, timeout=30)

    def _handle(
        self,
        conn: _Conn,
        idle: threading.Condition,
        flags: int,
        kind: int,
        cookie: int,
        offset: int,
        length: int,
        data: bytes,
    ) -> None:
        try:
            self._dispatch(conn, flags, kind, cookie, offset, length, data)
        except OSError:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        finally:
            with idle:
                conn.inflight -= 1
                idle.notify_all()

    def _dispatch(self, conn: _Conn, flags: int, kind: int, cookie: int, offset: int, length: int, data: bytes) -> None:
        disk = self.disk
        bad = _check_range(disk.size, offset, length)
        if kind in (P.CMD_WRITE, P.CMD_WRITE_ZEROES, P.CMD_TRIM) and not disk.writable:
            self._error(conn, cookie, P.EPERM, "the export is read-only (no writable overlay)")
            return
        if kind not in (P.CMD_READ, P.CMD_WRITE, P.CMD_FLUSH, P.CMD_WRITE_ZEROES, P.CMD_BLOCK_STATUS):
            self._error(conn, cookie, P.EINVAL, f"command {kind} is not supported")
            return
        if bad and kind != P.CMD_FLUSH:
            self._error(conn, cookie, P.EINVAL, bad)
            return
        if kind == P.CMD_READ and length > P.MAX_REQUEST:
            self._error(conn, cookie, P.EOVERFLOW, f"read of {length} bytes is over the limit {P.MAX_REQUEST}")
            return
        if kind == P.CMD_BLOCK_STATUS and not (conn.structured and conn.meta):
            self._error(conn, cookie, P.EINVAL, "block status needs structured replies and base:allocation")
            return
        pieces: list[Piece] = []
        runs: list[tuple[int, int]] = []
        try:  # the disk's part; sending the reply (below) fails only if the client went away
            if kind == P.CMD_READ:
                pieces = disk.read(offset, length) if length else []
            elif kind == P.CMD_BLOCK_STATUS:
                runs = disk.extents(offset, length) if length else []
            elif kind == P.CMD_WRITE:
                disk.write(offset, data)
            elif kind == P.CMD_WRITE_ZEROES:
                disk.write_zeroes(offset, length)
            if kind == P.CMD_FLUSH or (kind in (P.CMD_WRITE, P.CMD_WRITE_ZEROES) and flags & P.CMD_FLAG_FUA):
                disk.flush()
        except (E3Error, OSError) as e:
            message = f"{_command_name(kind)} at offset {offset} (+{length}) failed: {e}"
            log.error("NBD: %s", message)
            if self._on_error is not None:
                self._on_error(message)
            full = isinstance(e, OSError) and e.errno == errno.ENOSPC
            self._error(conn, cookie, P.ENOSPC if full else P.EIO, message)
            return
        if kind == P.CMD_READ:
            self._send_read(conn, flags, cookie, offset, pieces)
        elif kind == P.CMD_BLOCK_STATUS:
            self._send_block_status(conn, flags, cookie, length, runs)
        else:
            self._ok(conn, cookie)

    def _send_read(self, conn: _Conn, flags: int, cookie: int, offset: int, pieces: list[Piece]) -> None:
        with conn.send_lock:
            sock = conn.sock
            if not conn.structured:
                sock.sendall(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, cookie))
                for _, data, n in pieces:
                    sock.sendall(bytes(n) if data is None else data)
                return
            if flags & P.CMD_FLAG_DF or (len(pieces) <= 1 and not any(d is None for _, d, _ in pieces)):
                # one chunk: as the client asked (DF), or nothing to gain from splitting
                payload = sum(n for _, _, n in pieces)
                sock.sendall(P.chunk(P.REPLY_FLAG_DONE, P.REPLY_TYPE_OFFSET_DATA, cookie, 8 + payload))
                sock.sendall(struct.pack(">Q", offset))
                for _, data, n in pieces:
                    sock.sendall(bytes(n) if data is None else data)
                return
            for i, (at, data, n) in enumerate(pieces):
                done = P.REPLY_FLAG_DONE if i == len(pieces) - 1 else 0
                if data is None:
                    sock.sendall(P.chunk(done, P.REPLY_TYPE_OFFSET_HOLE, cookie, 12) + struct.pack(">QI", at, n))
                else:
                    sock.sendall(P.chunk(done, P.REPLY_TYPE_OFFSET_DATA, cookie, 8 + n) + struct.pack(">Q", at))
                    sock.sendall(data)

    def _send_block_status(
        self, conn: _Conn, flags: int, cookie: int, length: int, runs: list[tuple[int, int]]
    ) -> None:
        if flags & P.CMD_FLAG_REQ_ONE:
            runs = runs[:1]
        runs = runs[:65536] or [(length, 0)]
        payload = struct.pack(">I", META_ID) + b"".join(struct.pack(">II", n, state) for n, state in runs)
        with conn.send_lock:
            conn.sock.sendall(P.chunk(P.REPLY_FLAG_DONE, P.REPLY_TYPE_BLOCK_STATUS, cookie, len(payload)) + payload)

    def _ok(self, conn: _Conn, cookie: int) -> None:
        with conn.send_lock:
            if conn.structured:
                conn.sock.sendall(P.chunk(P.REPLY_FLAG_DONE, P.REPLY_TYPE_NONE, cookie, 0))
            else:
                conn.sock.sendall(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, 0, cookie))

    def _error(self, conn: _Conn, cookie: int, code: int, message: str) -> None:
        with conn.send_lock:
            if conn.structured:
                conn.sock.sendall(P.error_chunk(cookie, code, message))
            else:
                conn.sock.sendall(P.SIMPLE_REPLY.pack(P.SIMPLE_REPLY_MAGIC, code, cookie))


def _check_range(size: int, offset: int, length: int) -> str | None:
    if offset > size or length > size - offset:
        return f"request [{offset}, +{length}) is beyond the end of the disk ({size} bytes)"
    return None


def _command_name(kind: int) -> str:
    names = {P.CMD_READ: "read", P.CMD_WRITE: "write", P.CMD_FLUSH: "flush", P.CMD_WRITE_ZEROES: "write zeroes"}
    return names.get(kind, f"command {kind}")


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise _Closed
        got += k
    return bytes(buf)


__all__ = ["Disk", "NbdServer", "Piece"]
