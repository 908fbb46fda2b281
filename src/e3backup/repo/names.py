"""Node names as restic stores them: Go's ``strconv.Quote`` without the outer quotes (spec 7.5).

Names are raw bytes on disk; quoting lets any bytes (invalid UTF-8 included) survive JSON.
"""

from __future__ import annotations

import re
import unicodedata

from ..errors import IntegrityError

_SIMPLE = {0x07: "\\a", 0x08: "\\b", 0x0C: "\\f", 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t", 0x0B: "\\v"}
_PRINTABLE_CATEGORIES = ("L", "M", "N", "P", "S")
_PLAIN = re.compile(rb"[\x20\x21\x23-\x5b\x5d-\x7e]*\Z")  # printable ASCII except " and \


def _utf8_len(b: bytes, i: int) -> int:
    """Length of the valid UTF-8 sequence starting at ``b[i]`` (>= 0x80), or 0 if invalid."""
    lead = b[i]
    if 0xC2 <= lead <= 0xDF:
        n, lo, hi = 2, 0x80, 0xBF
    elif 0xE0 <= lead <= 0xEF:
        n = 3
        lo, hi = {0xE0: (0xA0, 0xBF), 0xED: (0x80, 0x9F)}.get(lead, (0x80, 0xBF))
    elif 0xF0 <= lead <= 0xF4:
        n = 4
        lo, hi = {0xF0: (0x90, 0xBF), 0xF4: (0x80, 0x8F)}.get(lead, (0x80, 0xBF))
    else:
        return 0
    if i + n > len(b) or not lo <= b[i + 1] <= hi:
        return 0
    for k in range(2, n):
        if not 0x80 <= b[i + k] <= 0xBF:
            return 0
    return n


def _printable(ch: str) -> bool:
    return ch == " " or unicodedata.category(ch)[0] in _PRINTABLE_CATEGORIES


def quote(name: bytes) -> str:
    """The value restic writes for raw name bytes."""
    if _PLAIN.match(name):
        return name.decode("ascii")
    out: list[str] = []
    i = 0
    while i < len(name):
        c = name[i]
        if c < 0x80:
            if c == 0x22:
                out.append('\\"')
            elif c == 0x5C:
                out.append("\\\\")
            elif 0x20 <= c <= 0x7E:
                out.append(chr(c))
            elif c in _SIMPLE:
                out.append(_SIMPLE[c])
            else:
                out.append(f"\\x{c:02x}")
            i += 1
            continue
        n = _utf8_len(name, i)
        if not n:
            out.append(f"\\x{c:02x}")
            i += 1
            continue
        ch = name[i : i + n].decode("utf-8")
        r = ord(ch)
        if _printable(ch):
            out.append(ch)
        elif r < 0x10000:
            out.append(f"\\u{r:04x}")
        else:
            out.append(f"\\U{r:08x}")
        i += n
    return "".join(out)


_UNSIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 0x5C, '"': 0x22}
_HEX = set("0123456789abcdefABCDEF")


def unquote(value: str) -> bytes:
    """Raw name bytes from the stored value (Go's ``strconv.Unquote``); errors on bad syntax."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return _fix_surrogates(value).encode("utf-8")
    out = bytearray()
    i = 0
    n = len(value)
    while i < n:
        ch = value[i]
        if ch == '"' or ch == "\n":
            raise IntegrityError(f"invalid name {value!r}: unquote failed")
        if ch != "\\":
            out += _fix_surrogates(ch).encode("utf-8")
            i += 1
            continue
        if i + 1 >= n:
            raise IntegrityError(f"invalid name {value!r}: unquote failed")
        e = value[i + 1]
        if e in _UNSIMPLE:
            out.append(_UNSIMPLE[e])
            i += 2
        elif e in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[e]
            digits = value[i + 2 : i + 2 + width]
            if len(digits) != width or not set(digits) <= _HEX:
                raise IntegrityError(f"invalid name {value!r}: unquote failed")
            v = int(digits, 16)
            if e == "x":
                out.append(v)
            else:
                if 0xD800 <= v <= 0xDFFF or v > 0x10FFFF:
                    raise IntegrityError(f"invalid name {value!r}: unquote failed")
                out += chr(v).encode("utf-8")
            i += 2 + width
        elif e in "01234567":
            digits = value[i + 1 : i + 4]
            if len(digits) != 3 or not set(digits) <= set("01234567") or int(digits, 8) > 0o377:
                raise IntegrityError(f"invalid name {value!r}: unquote failed")
            out.append(int(digits, 8))
            i += 4
        else:
            raise IntegrityError(f"invalid name {value!r}: unquote failed")
    return bytes(out)


def _fix_surrogates(s: str) -> str:
    # Go's JSON decoder turns lone surrogates into U+FFFD; Python keeps them.
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in s)


__all__ = ["quote", "unquote"]
