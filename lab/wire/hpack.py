"""HPACK (RFC 7541): HTTP/2 field blocks decoded representation by representation.

A field block is a sequence of representations, each starting with a bit pattern::

    1xxxxxxx  indexed field (§6.1): 7-bit-prefix index into the static (1-61) or dynamic
              (62-) table
    01xxxxxx  literal with incremental indexing (§6.2.1): 6-bit-prefix name index (0: a
              literal name follows), a value; the field is added to the dynamic table
    0000xxxx  literal without indexing (§6.2.2): 4-bit-prefix name index, value
    0001xxxx  literal never indexed (§6.2.3): the same, and intermediaries must not index it
              either (what ``hpack.Encoder`` sends for a sensitive header)
    001xxxxx  dynamic table size update (§6.3): 5-bit-prefix new maximum size

Integers (§5.1) fill the prefix; a prefix of all ones continues in 7-bit groups, low group
first. A string literal (§5.2) is a Huffman bit H, a 7-bit-prefix length, and that many
octets, Huffman-coded if H is set. :class:`HeaderBlockDecoder` parses these itself, to say
how every field was encoded and which bytes carry it (:class:`HeaderRepresentation`), and
keeps its own dynamic table (§4) to say what each one did to it; it uses hpack for Huffman
decoding and for the static table. The tests decode the same blocks with ``hpack.Decoder``
and check that both get the same fields and the same dynamic table after every block.

One :class:`HeaderBlockDecoder` is one decoding context, one per direction of a connection;
:class:`~lab.wire.h2decoder.FrameDecoder` runs one when it decodes headers. A block it
cannot decode raises :class:`HPACKError` (COMPRESSION_ERROR, RFC 9113 §4.3), and so does a
block over the limits defined here (ENHANCE_YOUR_CALM). A bare § is a section of RFC 7541.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Final

from hpack.exceptions import HPACKDecodingError
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

from lab.wire.h2constants import ErrorCode, _plural, _show
from lab.wire.h2errors import H2FrameError
from lab.wire.segment import Segment

__all__ = [
    "DEFAULT_HEADER_TABLE_SIZE",
    "MAX_FIELD_BLOCK_SIZE",
    "MAX_HEADER_LIST_SIZE",
    "MAX_HPACK_INTEGER_OCTETS",
    "HPACKError",
    "HeaderBlock",
    "HeaderBlockDecoder",
    "HeaderRepresentation",
    "Representation",
]

# --------------------------------------------------------------------------------------
# Limits

# RFC 9113 §4.3.1, §6.5.2: both HPACK contexts start with a 4,096-octet dynamic table.
DEFAULT_HEADER_TABLE_SIZE: Final = 4096

# The decoded size of one field section, counted as RFC 9113 §6.5.2
# (SETTINGS_MAX_HEADER_LIST_SIZE) and RFC 7541 §4.1 count it: name + value + 32 octets per
# field. The setting's initial value is "unlimited", so a receiver has to pick one: 64 KiB
# is what h2 and hpack use (DEFAULT_MAX_HEADER_LIST_SIZE = 2**16); it is also what stops an
# "HPACK bomb", a tiny block of indexed references to one big dynamic-table entry that
# decodes to megabytes.
MAX_HEADER_LIST_SIZE: Final = 64 * 1024

# The compressed size of one field block, all its fragments together. The fragments of an
# open block are held until END_HEADERS, so this bounds that memory. An honest encoder never
# makes a block bigger than the field section it decodes to (an indexed field is 1 octet
# for 32+ octets of list size, a literal its strings plus a few prefix octets; only a
# Huffman code made of the 30-bit codes of rare bytes can be longer than its text), so a
# block over MAX_HEADER_LIST_SIZE could only decode to a section that is refused anyway.
# h2 counts frames instead (64 CONTINUATIONs, CONTINUATION_BACKLOG), which with 16 KiB
# frames lets a megabyte pile up.
MAX_FIELD_BLOCK_SIZE: Final = MAX_HEADER_LIST_SIZE

# Octets in one HPACK integer, prefix included. RFC 7541 §5.1 leaves the bound to the
# implementation ("integer encodings that exceed implementation limits ... MUST be treated
# as decoding errors"). Six octets carry 35 bits past the prefix, more than any 32-bit
# quantity needs, and a run of zero-valued continuation octets cannot go on forever; hpack
# 4.2 stops at the same place (VARINT_MAX_LENGTH), so both refuse the same integers.
MAX_HPACK_INTEGER_OCTETS: Final = 6


# --------------------------------------------------------------------------------------
# Errors


class HPACKError(H2FrameError):
    """A field block that cannot be decoded (COMPRESSION_ERROR), or one over the decoder's
    limits (ENHANCE_YOUR_CALM, status hint 431). ``offset`` is where decoding stopped; in a
    block spread over several frames that can be inside an earlier frame."""


# --------------------------------------------------------------------------------------
# HPACK: representations, blocks, the decoder


class Representation(StrEnum):
    """The five kinds of HPACK representation (RFC 7541 §6)."""

    INDEXED = "indexed"
    INCREMENTAL = "literal with incremental indexing"
    WITHOUT_INDEXING = "literal without indexing"
    NEVER_INDEXED = "literal never indexed"
    SIZE_UPDATE = "dynamic table size update"


_STATIC: Final[tuple[tuple[bytes, bytes], ...]] = tuple(HeaderTable.STATIC_TABLE)
_STATIC_COUNT: Final = len(_STATIC)  # 61 (RFC 7541 Appendix A)


def _table_text(entries: int, size: int) -> str:
    return f"table now {entries} {'entry' if entries == 1 else 'entries'}, {size} bytes"


@dataclass(frozen=True, slots=True)
class HeaderRepresentation(Segment):
    """One representation of a field block; ``start``/``end`` count within the block
    (:meth:`HeaderBlock.wire_ranges` places them on the wire).

    ``index`` is the table index of an indexed field, the name's index for a literal with
    an indexed name, None for a literal name and a size update. ``name_huffman`` and
    ``value_huffman`` say whether each string literal was Huffman-coded (None when there
    was no literal), ``name_octets``/``value_octets`` how many octets it took on the wire
    (length prefix not counted). ``new_max_size`` is set for a size update. The last three
    describe the dynamic table after this representation, and how many entries it evicted.
    """

    representation: Representation
    name: bytes
    value: bytes
    index: int | None
    name_huffman: bool | None
    name_octets: int
    value_huffman: bool | None
    value_octets: int
    new_max_size: int | None
    table_entries: int
    table_size: int
    evicted: int

    kind: ClassVar[str] = "hpack-field"
    binary: ClassVar[bool] = True

    def note(self) -> str:
        table = _table_text(self.table_entries, self.table_size)
        if self.evicted:
            table += f" (evicted {self.evicted})"
        if self.representation is Representation.SIZE_UPDATE:
            return f"dynamic table size update to {self.new_max_size}; {table}"
        head = f"{_show(self.name)}: {_show(self.value)} — "
        if self.representation is Representation.INDEXED:
            assert self.index is not None
            return head + f"indexed ({_where(self.index)})"
        if self.index is not None:
            name = f"name {_where(self.index)}"
        else:
            name = "name " + _string_text(len(self.name), self.name_huffman, self.name_octets)
        value = "value " + _string_text(len(self.value), self.value_huffman, self.value_octets)
        text = f"{head}{self.representation}, {name}, {value}"
        if self.representation is Representation.INCREMENTAL:
            text += f"; {table}"
        return text


def _where(index: int) -> str:
    return f"static {index}" if index <= _STATIC_COUNT else f"dynamic {index}"


def _string_text(decoded: int, huffman: bool | None, octets: int) -> str:
    if huffman:
        return f"Huffman ({decoded}→{octets} bytes)"
    return f"literal ({_plural(octets, 'byte')})"


@dataclass(frozen=True, slots=True)
class HeaderBlock:
    """A decoded field block.

    ``representations`` tile the block: the first starts at 0, each starts where the last
    ended, the last ends at the block's size. ``table`` is the dynamic table afterwards,
    newest entry first (index 62 is ``table[0]``), with its size and maximum size.
    ``fragments`` are the absolute (start, end) wire ranges the block came in, in order;
    ``data`` is the block itself, its fragments joined (a representation's bytes are
    ``data[rep.start:rep.end]``).
    """

    representations: tuple[HeaderRepresentation, ...]
    table: tuple[tuple[bytes, bytes], ...]
    table_size: int
    table_max_size: int
    fragments: tuple[tuple[int, int], ...]
    data: bytes

    @property
    def headers(self) -> tuple[tuple[bytes, bytes], ...]:
        """The decoded fields, in order, as (name, value)."""
        return tuple(
            (r.name, r.value)
            for r in self.representations
            if r.representation is not Representation.SIZE_UPDATE
        )

    @property
    def size(self) -> int:
        return sum(end - start for start, end in self.fragments)

    def wire_ranges(self, start: int, end: int) -> list[tuple[int, int]]:
        """The absolute wire ranges holding block bytes ``[start, end)``: one range, or
        several when they straddle a frame boundary."""
        out: list[tuple[int, int]] = []
        at = 0
        for frag_start, frag_end in self.fragments:
            size = frag_end - frag_start
            lo, hi = max(start, at), min(end, at + size)
            if lo < hi:
                out.append((frag_start + lo - at, frag_start + hi - at))
            at += size
        return out

    def note(self) -> str:
        fields = [
            r for r in self.representations if r.representation is not Representation.SIZE_UPDATE
        ]
        counts: dict[str, int] = {}
        for r in fields:
            counts[r.representation] = counts.get(r.representation, 0) + 1
        how = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        text = f"{_plural(len(fields), 'field')}" + (f" ({how})" if how else "")
        return f"{text}; {_table_text(len(self.table), self.table_size)}"


class _BlockError(Exception):
    """An HPACK failure at a block offset; HeaderBlockDecoder turns it into HPACKError."""

    def __init__(self, message: str, at: int, code: ErrorCode = ErrorCode.COMPRESSION_ERROR):
        super().__init__(message)
        self.message = message
        self.at = at
        self.code = code


def _integer(block: bytes, i: int, prefix_bits: int) -> tuple[int, int]:
    """RFC 7541 §5.1: the integer whose prefix is the low ``prefix_bits`` of ``block[i]``.
    Returns (value, index past it)."""
    n = len(block)
    limit = (1 << prefix_bits) - 1
    value = block[i] & limit
    i += 1
    if value < limit:
        return value, i
    shift = 0
    first = i - 1
    while True:
        if i >= n:
            raise _BlockError("the field block ends inside an integer (RFC 7541 §5.1)", n)
        if i - first >= MAX_HPACK_INTEGER_OCTETS:
            raise _BlockError(
                f"integer longer than {MAX_HPACK_INTEGER_OCTETS} octets"
                " (MAX_HPACK_INTEGER_OCTETS; RFC 7541 §5.1)",
                i,
            )
        b = block[i]
        value += (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7


def _string(block: bytes, i: int) -> tuple[bytes, bool, int, int]:
    """RFC 7541 §5.2: a string literal at ``block[i]``. Returns (decoded, Huffman-coded,
    octets on the wire, index past it)."""
    n = len(block)
    if i >= n:
        raise _BlockError("the field block ends before a string literal (RFC 7541 §5.2)", n)
    huffman = bool(block[i] & 0x80)
    length, i = _integer(block, i, 7)
    end = i + length
    if end > n:
        raise _BlockError(
            f"string literal of {_plural(length, 'octet')} but the field block has"
            f" {n - i} left (RFC 7541 §5.2)",
            n,
        )
    raw = block[i:end]
    if not huffman:
        return raw, False, length, end
    try:
        return decode_huffman(raw), True, length, end
    except HPACKDecodingError:
        raise _BlockError(
            "invalid Huffman code: an EOS symbol, or padding that is longer than 7 bits or"
            " not all ones (RFC 7541 §5.2)",
            i,
        ) from None


class HeaderBlockDecoder:
    """One HPACK decoding context (RFC 7541 §2.2): one per direction of a connection.

    :meth:`decode` takes one complete field block (a HEADERS or PUSH_PROMISE fragment and
    its CONTINUATIONs, joined) and returns a :class:`HeaderBlock`. The dynamic table carries
    over from block to block, so blocks must be decoded in the order they were sent, and
    every one of them (RFC 9113 §4.3). ``max_table_size`` is the SETTINGS_HEADER_TABLE_SIZE this
    side has sent and had acknowledged: the ceiling for the encoder's size updates. Lowering
    it below the table's current maximum obliges the next block to start with a size update
    (RFC 7541 §4.2, RFC 9113 §4.3.1). After an error the context is unusable and the
    decoder refuses more blocks.
    """

    __slots__ = ("_entries", "_error", "_limit", "_max_block", "_max_list", "_max_size", "_size")

    def __init__(
        self,
        *,
        max_table_size: int = DEFAULT_HEADER_TABLE_SIZE,
        max_header_list_size: int = MAX_HEADER_LIST_SIZE,
        max_block_size: int = MAX_FIELD_BLOCK_SIZE,
    ) -> None:
        if min(max_table_size, max_header_list_size, max_block_size) < 0:
            raise ValueError("limits must not be negative")
        self._entries: deque[tuple[bytes, bytes]] = deque()  # newest first
        self._size = 0
        self._max_size = DEFAULT_HEADER_TABLE_SIZE  # what size updates have set
        self._limit = max_table_size  # SETTINGS_HEADER_TABLE_SIZE: the most they may set
        self._max_list = max_header_list_size
        self._max_block = max_block_size
        self._error: HPACKError | None = None

    @property
    def table(self) -> tuple[tuple[bytes, bytes], ...]:
        """The dynamic table, newest entry first."""
        return tuple(self._entries)

    @property
    def table_size(self) -> int:
        """The table's size as RFC 7541 §4.1 counts it: name + value + 32 per entry."""
        return self._size

    @property
    def table_max_size(self) -> int:
        """The maximum the encoder has set (4,096 until a size update says otherwise)."""
        return self._max_size

    @property
    def max_table_size(self) -> int:
        return self._limit

    @max_table_size.setter
    def max_table_size(self, value: int) -> None:
        if value < 0:
            raise ValueError("the table size limit must not be negative")
        self._limit = value

    @property
    def max_block_size(self) -> int:
        return self._max_block

    def decode(
        self, block: bytes, *, fragments: Sequence[tuple[int, int]] | None = None
    ) -> HeaderBlock:
        """Decode one complete field block.

        ``fragments`` are the absolute wire ranges the block's bytes came from, in order,
        and their sizes must add up to ``len(block)``; errors name wire offsets through
        them. By default the block is its own wire: offsets count from its first byte.
        """
        if self._error is not None:
            raise HPACKError(
                f"the HPACK context already failed: {self._error.message}",
                self._error.offset,
                error_code=self._error.error_code,
            )
        ranges = ((0, len(block)),) if fragments is None else tuple(fragments)
        if sum(end - start for start, end in ranges) != len(block):
            raise ValueError("the fragments do not add up to the block")
        try:
            representations = self._decode(block)
        except _BlockError as exc:
            hint = 431 if exc.code == ErrorCode.ENHANCE_YOUR_CALM else 400
            self._error = HPACKError(
                f"{exc.message}: {exc.code.name}",
                _wire_offset(ranges, exc.at),
                error_code=exc.code,
                status_hint=hint,
            )
            raise self._error from None
        return HeaderBlock(
            representations, tuple(self._entries), self._size, self._max_size, ranges, block
        )

    def _decode(self, block: bytes) -> tuple[HeaderRepresentation, ...]:
        n = len(block)
        if n > self._max_block:
            raise _BlockError(
                f"field block longer than {self._max_block} bytes (MAX_FIELD_BLOCK_SIZE)",
                self._max_block,
                ErrorCode.ENHANCE_YOUR_CALM,
            )
        out: list[HeaderRepresentation] = []
        entries = self._entries
        # RFC 7541 §4.2: after the limit went below the table's maximum, the first thing in
        # the next block must be a size update that gets under it.
        must_update = self._max_size > self._limit
        list_size = 0
        fields_seen = False
        i = 0
        while i < n:
            start = i
            b = block[i]
            if b & 0x80:
                # §6.1 Indexed Header Field: 1 + index (7-bit prefix)
                index, i = _integer(block, i, 7)
                if index == 0:
                    raise _BlockError("indexed field with index 0 (RFC 7541 §6.1)", start)
                name, value = self._lookup(index, start)
                rep = HeaderRepresentation(
                    start, i, Representation.INDEXED, name, value, index,
                    None, 0, None, 0, None, len(entries), self._size, 0,
                )  # fmt: skip
            elif b & 0x40:
                # §6.2.1 Literal Header Field with Incremental Indexing: 01 + name index (6)
                rep = self._literal(block, i, 6, Representation.INCREMENTAL)
            elif b & 0x20:
                # §6.3 Dynamic Table Size Update: 001 + max size (5-bit prefix); only at the
                # start of a block (§4.2), never past SETTINGS_HEADER_TABLE_SIZE.
                if fields_seen:
                    raise _BlockError(
                        "dynamic table size update after a field: updates come first in a"
                        " field block (RFC 7541 §4.2)",
                        start,
                    )
                new_max, i = _integer(block, i, 5)
                if new_max > self._limit:
                    raise _BlockError(
                        f"dynamic table size update to {new_max}, over the"
                        f" SETTINGS_HEADER_TABLE_SIZE of {self._limit} (RFC 7541 §6.3)",
                        start,
                    )
                self._max_size = new_max
                evicted = self._evict(new_max)
                must_update = False
                rep = HeaderRepresentation(
                    start, i, Representation.SIZE_UPDATE, b"", b"", None,
                    None, 0, None, 0, new_max, len(entries), self._size, evicted,
                )  # fmt: skip
                out.append(rep)
                continue
            else:
                # §6.2.2 without indexing (0000 + name index, 4-bit prefix) and §6.2.3 never
                # indexed (0001 + name index)
                kind = Representation.NEVER_INDEXED if b & 0x10 else Representation.WITHOUT_INDEXING
                rep = self._literal(block, i, 4, kind)
            if must_update:
                raise _BlockError(
                    f"the field block must start with a dynamic table size update: the"
                    f" limit is {self._limit}, the table's maximum {self._max_size}"
                    " (RFC 7541 §4.2, RFC 9113 §4.3.1)",
                    start,
                )
            i = rep.end
            fields_seen = True
            list_size += 32 + len(rep.name) + len(rep.value)
            if list_size > self._max_list:
                raise _BlockError(
                    f"header list larger than {self._max_list} bytes (MAX_HEADER_LIST_SIZE,"
                    " counted as RFC 9113 §6.5.2 does)",
                    start,
                    ErrorCode.ENHANCE_YOUR_CALM,
                )
            out.append(rep)
        if must_update:
            raise _BlockError(
                "the field block must start with a dynamic table size update"
                " (RFC 7541 §4.2, RFC 9113 §4.3.1)",
                n,
            )
        return tuple(out)

    def _literal(
        self, block: bytes, i: int, prefix_bits: int, kind: Representation
    ) -> HeaderRepresentation:
        """§6.2: a literal field, name indexed (index > 0) or literal, value literal."""
        start = i
        index, i = _integer(block, i, prefix_bits)
        name_huffman: bool | None = None
        name_octets = 0
        if index:
            name = self._lookup(index, start)[0]
        else:
            name, name_huffman, name_octets, i = _string(block, i)
        value, value_huffman, value_octets, i = _string(block, i)
        evicted = self._add(name, value) if kind is Representation.INCREMENTAL else 0
        return HeaderRepresentation(
            start, i, kind, name, value, index or None, name_huffman, name_octets,
            value_huffman, value_octets, None, len(self._entries), self._size, evicted,
        )  # fmt: skip

    def _lookup(self, index: int, at: int) -> tuple[bytes, bytes]:
        """§2.3.3: indexes 1-61 are the static table, 62 on the dynamic one, newest first."""
        if index <= _STATIC_COUNT:
            return _STATIC[index - 1]
        entries = self._entries
        if index - _STATIC_COUNT > len(entries):
            raise _BlockError(
                f"index {index} is past the end of the table ({_STATIC_COUNT} static +"
                f" {len(entries)} dynamic entries; RFC 7541 §2.3.3)",
                at,
            )
        return entries[index - _STATIC_COUNT - 1]

    def _evict(self, max_size: int) -> int:
        """§4.3-4.4: drop the oldest entries until the table fits in ``max_size``."""
        evicted = 0
        entries = self._entries
        while self._size > max_size:
            name, value = entries.pop()
            self._size -= 32 + len(name) + len(value)
            evicted += 1
        return evicted

    def _add(self, name: bytes, value: bytes) -> int:
        """§4.4: make room, then add; an entry bigger than the whole table empties it and is
        not added."""
        size = 32 + len(name) + len(value)
        if size > self._max_size:
            return self._evict(0)
        evicted = self._evict(self._max_size - size)
        self._entries.appendleft((name, value))
        self._size += size
        return evicted


def _wire_offset(ranges: Sequence[tuple[int, int]], at: int) -> int:
    """Block offset ``at`` as a wire offset; the block's end maps to the last range's end."""
    for start, end in ranges:
        if at < end - start:
            return start + at
        at -= end - start
    return ranges[-1][1] + at if ranges else at
