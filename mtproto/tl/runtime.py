"""The TL runtime: reading and writing TL values (core.telegram.org/mtproto/serialize).

What the wire looks like:
- ``int`` 4 bytes, ``long`` 8 bytes, ``double`` 8 bytes, all little-endian; ``int128``/``int256`` are raw
  16/32-byte strings here (they are nonces, hashed as bytes by the handshake, never used as numbers).
- ``bytes`` and ``string``: a length below 254 is one byte, else 0xfe and three bytes; then the data and zero
  padding to a multiple of 4. ``string`` is UTF-8 text.
- A boxed value starts with its 4-byte constructor id; a bare one does not. ``Vector<T>`` is boxed
  (0x1cb5c415, count, items), ``vector<T>`` bare (count, items). ``Bool`` is boolTrue/boolFalse.
- ``gzip_packed#3072cfa1 packed_data:bytes`` may stand in for any boxed object; ``Reader.read_object``
  unwraps it transparently, with a bound on the unpacked size.

Generated classes (``mtproto.tl.mt``, ``mtproto.tl.api``) subclass ``TLObject`` or ``TLFunction`` and register
their constructor ids here, so a boxed object can be read without knowing its type in advance.

Decoding is of untrusted bytes: every failure raises ``TLDecodeError`` (a ``RemoteProtocolError``), and no
count or length read from the wire makes the reader allocate or loop before it is checked against the bytes
that are actually there.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar, cast

from mtproto.errors import LocalProtocolError as LocalProtocolError  # re-exported for generated code
from mtproto.errors import RemoteProtocolError

T = TypeVar("T")
R = TypeVar("R")
TO = TypeVar("TO", bound="TLObject")

INT = struct.Struct("<i")
UINT = struct.Struct("<I")
LONG = struct.Struct("<q")
DOUBLE = struct.Struct("<d")

VECTOR_ID = 0x1CB5C415
BOOL_TRUE_ID = 0x997275B5
BOOL_FALSE_ID = 0xBC799737
GZIP_PACKED_ID = 0x3072CFA1

VECTOR_HEADER = UINT.pack(VECTOR_ID)
BOOL_TRUE = UINT.pack(BOOL_TRUE_ID)
BOOL_FALSE = UINT.pack(BOOL_FALSE_ID)

#: Largest object a gzip_packed may unpack to. MTProto messages are bounded by the transport's frame size
#: (1 MiB by default), and a gzip bomb must fail before it is inflated.
MAX_UNPACKED = 4 * 1024 * 1024
#: Deepest nesting of boxed objects a reader accepts (jsonArray in jsonArray in ...). A hostile peer must get
#: a clean decode error, never Python's RecursionError.
MAX_DEPTH = 64


class TLDecodeError(RemoteProtocolError):
    """The bytes are not a valid serialization of what was expected."""


class UnknownConstructorError(TLDecodeError):
    """A boxed value carries a constructor id that no loaded schema defines."""

    def __init__(self, constructor_id: int, context: str = "") -> None:
        where = f" in {context}" if context else ""
        super().__init__(f"unknown TL constructor id 0x{constructor_id:08x}{where}")
        self.constructor_id = constructor_id


class TLObject:
    """Base class of every generated TL constructor."""

    __slots__ = ()

    CONSTRUCTOR_ID: ClassVar[int]
    TL_NAME: ClassVar[str]
    _ID_BYTES: ClassVar[bytes]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "CONSTRUCTOR_ID" in cls.__dict__:
            cls._ID_BYTES = UINT.pack(cls.CONSTRUCTOR_ID)

    def _write_bare(self, out: bytearray) -> None:
        raise NotImplementedError

    @classmethod
    def _read_bare(cls, r: Reader) -> TLObject:
        raise NotImplementedError

    def _write(self, out: bytearray) -> None:
        out += self._ID_BYTES
        self._write_bare(out)

    def to_bytes(self) -> bytes:
        """Serialize boxed (constructor id first)."""
        out = bytearray()
        try:
            self._write(out)
        except (struct.error, TypeError, AttributeError, UnicodeEncodeError) as exc:
            raise LocalProtocolError(f"cannot serialize {type(self).__name__}: {exc}") from exc
        return bytes(out)

    @classmethod
    def from_bytes(cls: type[TO], data: bytes) -> TO:
        """Read one boxed object of this class from ``data``, which it must fill exactly."""
        r = Reader(data)
        obj = r.read_object()
        if not isinstance(obj, cls):
            raise TLDecodeError(f"expected {cls.__name__}, got {type(obj).__name__}")
        r.expect_end()
        return obj


class TLFunction(TLObject, Generic[R]):
    """Base class of every generated TL function (an RPC query); ``R`` is what it returns."""

    __slots__ = ()

    def read_result(self, r: Reader) -> R:
        """Read this function's result from an rpc_result body."""
        raise NotImplementedError


class RawObject(TLObject):
    """Bytes that are already a serialized boxed TL object, written verbatim.

    The gateway forwards queries and results it does not decode (an rpc_result's body, a container's
    message), so the session layer must be able to wrap bytes it only carries.
    """

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def _write(self, out: bytearray) -> None:
        out += self.data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RawObject) and other.data == self.data

    def __hash__(self) -> int:
        return hash(self.data)

    def __repr__(self) -> str:
        cid = f"0x{UINT.unpack_from(self.data)[0]:08x}" if len(self.data) >= 4 else "?"
        return f"RawObject({cid}, {len(self.data)} bytes)"


class TypeRef(Generic[T]):
    """A TL type as generated code reads it: its name and the ids of its constructors.

    The type parameter is the Python type the read returns, so generated readers need no casts:
    ``_T_DCOPTION: TypeRef[TypeDcOption] = TypeRef("DcOption", 0x18B7A10D)``.
    """

    __slots__ = ("ids", "name")

    def __init__(self, name: str, *ids: int) -> None:
        self.name = name
        self.ids = frozenset(ids)


_REGISTRY: dict[int, type[TLObject]] = {}


def register(*classes: type[TLObject]) -> None:
    """Make ``classes`` readable by constructor id. Called by each generated module at import."""
    for cls in classes:
        known = _REGISTRY.get(cls.CONSTRUCTOR_ID)
        if known is not None and known is not cls:
            raise LocalProtocolError(
                f"constructor id 0x{cls.CONSTRUCTOR_ID:08x} defined twice: {known.TL_NAME} and {cls.TL_NAME}"
            )
        _REGISTRY[cls.CONSTRUCTOR_ID] = cls


def class_for_id(constructor_id: int) -> type[TLObject] | None:
    return _REGISTRY.get(constructor_id)


# -- writing ------------------------------------------------------------------------------------------------


def write_bytes(out: bytearray, data: bytes) -> None:
    n = len(data)
    if n < 254:
        out.append(n)
        out += data
        pad = (-(n + 1)) & 3
    else:
        if n >= 1 << 24:
            raise LocalProtocolError(f"TL bytes of {n} bytes exceed the 16 MiB a length prefix can say")
        out += UINT.pack((n << 8) | 254)
        out += data
        pad = (-n) & 3
    if pad:
        out += b"\0" * pad


def write_string(out: bytearray, text: str) -> None:
    write_bytes(out, text.encode())


def write_bool(out: bytearray, value: bool) -> None:
    out += BOOL_TRUE if value else BOOL_FALSE


def write_int128(out: bytearray, value: bytes) -> None:
    if len(value) != 16:
        raise LocalProtocolError(f"int128 must be 16 bytes, got {len(value)}")
    out += value


def write_int256(out: bytearray, value: bytes) -> None:
    if len(value) != 32:
        raise LocalProtocolError(f"int256 must be 32 bytes, got {len(value)}")
    out += value


# -- reading ------------------------------------------------------------------------------------------------


class Reader:
    """A cursor over one buffer of untrusted TL bytes."""

    __slots__ = ("_budget", "_depth", "_gzipped", "data", "pos")

    def __init__(
        self, data: bytes | bytearray | memoryview, pos: int = 0, *, max_unpacked: int = MAX_UNPACKED
    ) -> None:
        self.data = bytes(data)
        self.pos = pos
        # One inflation budget for everything read through this reader (a container of many gzip_packed
        # bodies shares it): a small message must not inflate to many times MAX_UNPACKED.
        self._budget = [max_unpacked]
        self._depth = 0
        self._gzipped = False  # inside a gzip_packed: another one is refused

    def _inner(self, data: bytes) -> Reader:
        inner = Reader(data)
        inner._budget = self._budget
        inner._depth = self._depth
        inner._gzipped = True
        return inner

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def expect_end(self) -> None:
        if self.pos != len(self.data):
            raise TLDecodeError(f"{len(self.data) - self.pos} unexpected trailing bytes")

    def _take(self, n: int) -> bytes:
        p = self.pos
        end = p + n
        if end > len(self.data):
            raise TLDecodeError(f"truncated: wanted {n} bytes at offset {p}, {len(self.data) - p} left")
        self.pos = end
        return self.data[p:end]

    def read_int(self) -> int:
        p = self.pos
        if p + 4 > len(self.data):
            raise TLDecodeError(f"truncated: wanted an int at offset {p}")
        self.pos = p + 4
        value: int = INT.unpack_from(self.data, p)[0]
        return value

    def read_uint(self) -> int:
        p = self.pos
        if p + 4 > len(self.data):
            raise TLDecodeError(f"truncated: wanted a constructor id at offset {p}")
        self.pos = p + 4
        value: int = UINT.unpack_from(self.data, p)[0]
        return value

    def read_long(self) -> int:
        p = self.pos
        if p + 8 > len(self.data):
            raise TLDecodeError(f"truncated: wanted a long at offset {p}")
        self.pos = p + 8
        value: int = LONG.unpack_from(self.data, p)[0]
        return value

    def read_double(self) -> float:
        p = self.pos
        if p + 8 > len(self.data):
            raise TLDecodeError(f"truncated: wanted a double at offset {p}")
        self.pos = p + 8
        value: float = DOUBLE.unpack_from(self.data, p)[0]
        return value

    def read_int128(self) -> bytes:
        return self._take(16)

    def read_int256(self) -> bytes:
        return self._take(32)

    def read_bytes(self) -> bytes:
        data = self.data
        p = self.pos
        if p >= len(data):
            raise TLDecodeError(f"truncated: wanted a bytes length at offset {p}")
        n = data[p]
        if n < 254:
            head = 1
        elif n == 254:
            if p + 4 > len(data):
                raise TLDecodeError(f"truncated: wanted a long bytes length at offset {p}")
            n = data[p + 1] | (data[p + 2] << 8) | (data[p + 3] << 16)
            head = 4
        else:
            raise TLDecodeError(f"invalid bytes length prefix 0xff at offset {p}")
        end = p + head + n
        total = (head + n + 3) & ~3
        if p + total > len(data):
            raise TLDecodeError(f"truncated: bytes of length {n} at offset {p} overrun the buffer")
        self.pos = p + total
        return data[p + head : end]

    def read_string(self) -> str:
        raw = self.read_bytes()
        try:
            return raw.decode()
        except UnicodeDecodeError as exc:
            raise TLDecodeError(f"string is not valid UTF-8: {exc}") from None

    def read_bool(self) -> bool:
        cid = self.read_uint()
        if cid == BOOL_TRUE_ID:
            return True
        if cid == BOOL_FALSE_ID:
            return False
        raise TLDecodeError(f"expected Bool, got constructor 0x{cid:08x}")

    def _count(self, item_size: int) -> int:
        n = self.read_int()
        # Each item takes at least ``item_size`` bytes: a count the buffer cannot hold is rejected before
        # any item is read (or any list grows).
        if n < 0 or n * item_size > len(self.data) - self.pos:
            raise TLDecodeError(f"vector count {n} does not fit the {len(self.data) - self.pos} bytes left")
        return n

    def read_vector(self, item: Callable[[], T], item_size: int = 4) -> list[T]:
        """A boxed ``Vector<T>``; ``item`` reads one element."""
        cid = self.read_uint()
        if cid != VECTOR_ID:
            raise TLDecodeError(f"expected Vector, got constructor 0x{cid:08x}")
        return [item() for _ in range(self._count(item_size))]

    def read_bare_vector(self, item: Callable[[], T], item_size: int = 4) -> list[T]:
        """A bare ``vector<T>`` (no constructor id)."""
        return [item() for _ in range(self._count(item_size))]

    def read_object(self) -> TLObject:
        """Any boxed object, by its constructor id; gzip_packed is unwrapped transparently."""
        cid = self.read_uint()
        if cid == GZIP_PACKED_ID:
            if self._gzipped:
                raise TLDecodeError("gzip_packed inside gzip_packed")
            inner = self._inner(self.read_unpacked())
            obj = inner.read_object()
            inner.expect_end()
            return obj
        cls = _REGISTRY.get(cid)
        if cls is None:
            raise UnknownConstructorError(cid)
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise TLDecodeError(f"objects nested deeper than {MAX_DEPTH}")
        try:
            return cls._read_bare(self)
        finally:
            self._depth -= 1

    def read_boxed(self, ref: TypeRef[T]) -> T:
        """A boxed object whose constructor must be one of the constructors of ``ref``'s type."""
        start = self.pos
        obj = self.read_object()
        if obj.CONSTRUCTOR_ID not in ref.ids:
            raise TLDecodeError(f"expected {ref.name} at offset {start}, got {obj.TL_NAME}")
        return cast(T, obj)

    def read_bare(self, ref: TypeRef[T]) -> T:
        """A bare object of the single constructor of ``ref`` (``%Message``, ``vector<future_salt>``)."""
        (constructor_id,) = ref.ids
        cls = _REGISTRY.get(constructor_id)
        if cls is None:
            raise UnknownConstructorError(constructor_id, "bare field")
        return cast(T, cls._read_bare(self))

    def read_query(self) -> TLFunction[Any]:
        """A boxed function (the ``query:!X`` of invokeWithLayer and friends)."""
        start = self.pos
        obj = self.read_object()
        if not isinstance(obj, TLFunction):
            raise TLDecodeError(f"expected a function at offset {start}, got {obj.TL_NAME}")
        return obj

    @property
    def max_unpacked(self) -> int:
        """How many more bytes gzip_packed values read through this reader may inflate to."""
        return self._budget[0]

    def read_unpacked(self) -> bytes:
        """The body of a gzip_packed whose constructor id was already read, inflated within the budget."""
        packed = self.read_bytes()
        budget = self._budget[0]
        inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 32)  # gzip or zlib header, as senders vary
        try:
            body = inflater.decompress(packed, budget + 1)
        except zlib.error as exc:
            raise TLDecodeError(f"gzip_packed does not inflate: {exc}") from None
        if len(body) > budget or inflater.unconsumed_tail:
            raise TLDecodeError(f"gzip_packed inflates beyond {budget} bytes (what is left of this message's budget)")
        if not inflater.eof:
            raise TLDecodeError("gzip_packed stream is cut short (no end of stream)")
        if inflater.unused_data:
            raise TLDecodeError(f"{len(inflater.unused_data)} bytes after the end of the gzip_packed stream")
        self._budget[0] = budget - len(body)
        return body

    def read_result(self, item: Callable[[Reader], T]) -> T:
        """Read a function result with ``item``, unwrapping a gzip_packed around it first."""
        if self.pos + 4 <= len(self.data) and UINT.unpack_from(self.data, self.pos)[0] == GZIP_PACKED_ID:
            if self._gzipped:
                raise TLDecodeError("gzip_packed inside gzip_packed")
            self.pos += 4
            inner = self._inner(self.read_unpacked())
            value = item(inner)
            inner.expect_end()
            return value
        return item(self)


def gzip_pack(data: bytes) -> bytes:
    """Serialize ``gzip_packed`` around an already serialized object (what a sender does for big answers)."""
    out = bytearray(UINT.pack(GZIP_PACKED_ID))
    write_bytes(out, zlib.compress(data, wbits=zlib.MAX_WBITS | 16))
    return bytes(out)
