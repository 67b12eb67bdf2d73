"""The grammar of HTTP/1.1 chunked coding (RFC 9112 §7.1), written down as data.

What :mod:`lab.wire.chunked` checks a body against: the limits a recipient picks (the RFC
sets none), the byte classes of RFC 9110 (§5.6.2 token, §5.6.4 quoted-string, §5.5 field
values), the regular expressions of the fast path, and the chunk-size line (§7.1, §7.1.1)
as a state machine compiled into one 256-byte row per state, with the words its error
messages use for a byte.
"""

from __future__ import annotations

import re

# --------------------------------------------------------------------------------------
# Limits. RFC 9112 §7.1 puts no bound on any of these; a recipient must pick its own.

# 16 hex digits spell 2^64 - 1, more than any real body (and than any file system holds).
# Longer numerals are refused while they are being read, before int() ever sees them, so a
# megabyte of digits costs neither memory nor a huge integer. h11 allows 20 (its comment:
# "len(str(2**64)) == 20", a decimal count applied to hex). Leading zeros count: "0" * 17 is
# as refused as "1" * 17, which keeps the line bounded too.
MAX_CHUNK_SIZE_DIGITS = 16

# Extension bytes on one size line: everything between the last hex digit and the CR,
# BWS included. Real senders almost never send extensions; 1 KiB leaves room for a few
# long ones. Unbounded extensions are an amplification: h11 0.16 accepts 10 MB of them for
# a 5-byte chunk, and both Node.js (CVE-2024-22019) and Go (CVE-2023-39326) added caps
# after such reports.
MAX_CHUNK_EXTENSIONS_SIZE = 1024

# The longest size line we ever hold while waiting for its CRLF.
MAX_SIZE_LINE = MAX_CHUNK_SIZE_DIGITS + MAX_CHUNK_EXTENSIONS_SIZE + 2

# Bytes after the last-chunk line up to and including the final CRLF. 16 KiB is what h11
# allows for a whole header section (DEFAULT_MAX_INCOMPLETE_EVENT_SIZE); trailers are
# usually a checksum or a status line, far smaller than the header section.
MAX_TRAILER_SECTION_SIZE = 16 * 1024

_CR, _LF, _HTAB, _SP, _COLON = 0x0D, 0x0A, 0x09, 0x20, 0x3A

# --------------------------------------------------------------------------------------
# Byte classes (RFC 9110 §5.6.2 token, §5.6.4 quoted-string, §5.5 field values).

_TCHARS = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_HEXDIGS = b"0123456789ABCDEFabcdef"
_WS = b" \t"
_VCHAR = bytes(range(0x21, 0x7F))
_OBS_TEXT = bytes(range(0x80, 0x100))
# qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text: anything visible but '"' and '\'
_QDTEXT = bytes(b for b in b"\t " + _VCHAR + _OBS_TEXT if b not in b'"\\')
# quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
_QPAIR_OK = b"\t " + _VCHAR + _OBS_TEXT

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = rb'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_EXT = rb"[ \t]*;[ \t]*" + _TOKEN + rb"(?:[ \t]*=[ \t]*(?:" + _TOKEN + rb"|" + _QUOTED + rb"))?"

# A whole, valid size line: the fast path, one regex call per chunk. The digit count and
# extension length are checked after the match. Anything it does not match (a line split
# across reads, or a wrong one) goes to the byte-by-byte machine below, which knows why.
_SIZE_LINE_RE = re.compile(rb"([0-9A-Fa-f]+)((?:" + _EXT + rb")*)\r\n")
_EXT_ITEM_RE = re.compile(
    rb"[ \t]*;[ \t]*(" + _TOKEN + rb")(?:[ \t]*=[ \t]*(" + _TOKEN + rb"|" + _QUOTED + rb"))?"
)
_QUOTED_PAIR_RE = re.compile(rb"\\(.)", re.DOTALL)
_TOKEN_RE = re.compile(_TOKEN)
_EXT_VALUE_RE = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")  # what a quoted-string can carry

# Runs of bytes that may appear in a trailer field name, and in a field value with its OWS
# (field-vchar = VCHAR / obs-text, plus SP / HTAB between them and around them).
_NAME_RUN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]*")
_VALUE_RUN = re.compile(rb"[\t\x20-\x7e\x80-\xff]*")
_FIELD_VALUE_RE = re.compile(rb"(?:[\x21-\x7e\x80-\xff](?:[ \t]*[\x21-\x7e\x80-\xff])*)?")

# --------------------------------------------------------------------------------------
# The size line as a state machine. The table is data: state -> (bytes, next state) moves,
# plus what the state was waiting for (used in error messages). RFC 9112 §7.1 and §7.1.1.

_L_START, _L_DIGITS, _L_EXT, _L_BWS, _L_SEMI, _L_NAME = range(6)
_L_NAME_BWS, _L_EQ, _L_TOKEN, _L_QUOTED, _L_ESCAPE, _L_CR, _L_END = range(6, 13)
_ERR = 255

_SIZE_LINE_MACHINE: dict[int, tuple[tuple[tuple[bytes, int], ...], str]] = {
    # chunk-size = 1*HEXDIG
    _L_START: (((_HEXDIGS, _L_DIGITS),), "a hex digit"),
    _L_DIGITS: (
        ((_HEXDIGS, _L_DIGITS), (_WS, _L_BWS), (b";", _L_SEMI), (b"\r", _L_CR)),
        "a hex digit, ';' or CRLF",
    ),
    # after a complete extension: another one, or the end of the line
    _L_EXT: (((_WS, _L_BWS), (b";", _L_SEMI), (b"\r", _L_CR)), "';' or CRLF"),
    # BWS before ';': whitespace here must be followed by ';', never by the CRLF
    _L_BWS: (
        ((_WS, _L_BWS), (b";", _L_SEMI)),
        "';' (whitespace after the size or an extension is only allowed before ';')",
    ),
    # ";" BWS chunk-ext-name
    _L_SEMI: (((_WS, _L_SEMI), (_TCHARS, _L_NAME)), "an extension name (a token)"),
    _L_NAME: (
        ((_TCHARS, _L_NAME), (_WS, _L_NAME_BWS), (b"=", _L_EQ), (b";", _L_SEMI), (b"\r", _L_CR)),
        "'=', ';' or CRLF after the extension name",
    ),
    # BWS after the name: before "=" or before the next ";"
    _L_NAME_BWS: (((_WS, _L_NAME_BWS), (b"=", _L_EQ), (b";", _L_SEMI)), "'=' or ';'"),
    # "=" BWS chunk-ext-val, a token or a quoted-string
    _L_EQ: (
        ((_WS, _L_EQ), (_TCHARS, _L_TOKEN), (b'"', _L_QUOTED)),
        "an extension value (a token or a quoted string)",
    ),
    _L_TOKEN: (
        ((_TCHARS, _L_TOKEN), (_WS, _L_BWS), (b";", _L_SEMI), (b"\r", _L_CR)),
        "';' or CRLF after the extension value",
    ),
    _L_QUOTED: (
        ((_QDTEXT, _L_QUOTED), (b"\\", _L_ESCAPE), (b'"', _L_EXT)),
        "text or a closing '\"' in the quoted string",
    ),
    _L_ESCAPE: (((_QPAIR_OK, _L_QUOTED),), "a visible character, SP or HTAB after '\\'"),
    # CR only ever comes as half of CRLF: a bare CR is invalid (RFC 9112 §2.2)
    _L_CR: (((b"\n", _L_END),), "LF after CR"),
}


def _compile_machine(
    machine: dict[int, tuple[tuple[tuple[bytes, int], ...], str]],
) -> tuple[bytes, ...]:
    """One 256-byte row per state: row[byte] is the next state, or _ERR."""
    rows = []
    for state in range(len(machine)):
        row = bytearray([_ERR]) * 256
        for allowed, target in machine[state][0]:
            for b in allowed:
                row[b] = target
        rows.append(bytes(row))
    return tuple(rows)


_SIZE_LINE_TABLE = _compile_machine(_SIZE_LINE_MACHINE)

_BYTE_NAMES = {0x00: "NUL", _HTAB: "HTAB", _LF: "LF", _CR: "CR", _SP: "SP", 0x7F: "DEL"}


def _describe(b: int) -> str:
    """A byte as a reader wants to see it in an error message."""
    if b in _BYTE_NAMES:
        return f"{_BYTE_NAMES[b]} (0x{b:02x})"
    if 0x21 <= b < 0x7F:
        return repr(chr(b))
    return f"0x{b:02x}"


def _show(data: bytes) -> str:
    """Bytes for a note: printable ASCII as is, everything else as \\xNN."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else f"\\x{b:02x}" for b in data)
