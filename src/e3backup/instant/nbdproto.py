"""NBD wire format: the constants and packers of the protocol's newstyle handshake and its
transmission phase (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md).

Only what the server speaks: fixed newstyle negotiation (``NBD_OPT_GO``/``INFO``/``LIST``/
``EXPORT_NAME``/``ABORT``), structured replies, the ``base:allocation`` meta context (block
status: holes and zeros), and the commands ``READ``, ``WRITE``, ``FLUSH``, ``WRITE_ZEROES``,
``BLOCK_STATUS`` and ``DISC``. Names follow the specification without the ``NBD_`` prefix.
"""

from __future__ import annotations

import struct

# -- handshake ---------------------------------------------------------------------------------
INIT_PASSWD = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT"
OPT_REPLY_MAGIC = 0x3E889045565A9

FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR_UNSUP = (1 << 31) + 1
REP_ERR_POLICY = (1 << 31) + 2
REP_ERR_INVALID = (1 << 31) + 3
REP_ERR_UNKNOWN = (1 << 31) + 6

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# transmission flags
FLAG_HAS_FLAGS = 1 << 0
FLAG_READ_ONLY = 1 << 1
FLAG_SEND_FLUSH = 1 << 2
FLAG_SEND_FUA = 1 << 3
FLAG_SEND_WRITE_ZEROES = 1 << 6
FLAG_SEND_DF = 1 << 7
FLAG_CAN_MULTI_CONN = 1 << 8

BASE_ALLOCATION = "base:allocation"
STATE_HOLE = 1
STATE_ZERO = 2

# -- transmission ------------------------------------------------------------------------------
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3

REPLY_FLAG_DONE = 1 << 0
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) + 1

EPERM = 1
EIO = 5
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95

MAX_REQUEST = 32 << 20
"""Largest read or write accepted (the specification's common limit; advertised as block size
maximum)."""
MAX_OPTION = 64 << 10

REQUEST = struct.Struct(">IHHQQI")  # magic, command flags, type, cookie, offset, length
OPTION = struct.Struct(">QII")  # IHAVEOPT, option, length
OPTION_REPLY = struct.Struct(">QIII")  # magic, option, reply type, length
SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, cookie
CHUNK = struct.Struct(">IHHQI")  # magic, flags, type, cookie, length


def option_reply(option: int, reply: int, data: bytes = b"") -> bytes:
    return OPTION_REPLY.pack(OPT_REPLY_MAGIC, option, reply, len(data)) + data


def chunk(flags: int, kind: int, cookie: int, payload_length: int) -> bytes:
    """The header of one structured reply chunk (the payload follows)."""
    return CHUNK.pack(STRUCTURED_REPLY_MAGIC, flags, kind, cookie, payload_length)


def error_chunk(cookie: int, errno: int, message: str) -> bytes:
    text = message.encode()[:4096]
    payload = struct.pack(">IH", errno, len(text)) + text
    return chunk(REPLY_FLAG_DONE, REPLY_TYPE_ERROR, cookie, len(payload)) + payload
