"""A parser for TL schema files (core.telegram.org/mtproto/TL, /mtproto/TL-combinators).

A schema is a list of combinators, one per line:

    name#id {X:Type} param:type ... = ResultType;

``---types---`` and ``---functions---`` switch between constructors and functions. Comments start with
``//``. The built-in declarations (``int ? = Int;``, ``vector {t:Type} # [ t ] = Vector t;`` ...) are
recognised and skipped: the runtime implements those types by hand.

A parameter's type is one of: a bare or boxed type name (``int``, ``string``, ``%Message``, ``DcOption``),
``Vector<T>`` (boxed) or ``vector<T>`` (bare), ``#`` (a flags word), ``flags.N?T`` (present when bit N of the
flags word ``flags`` is set; ``flags.N?true`` is a bit and nothing on the wire), ``!X`` (any query whose
result type is the generic ``X``).

When a combinator has no explicit ``#id`` its id is computed as TL defines it: the CRC32 of the combinator's
normalised text; ``normalized_line`` gives that text, and a test checks every explicit id against it.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from mtproto.errors import LocalProtocolError

#: Types the runtime reads and writes itself; everything else must be defined by some combinator.
PRIMITIVES = frozenset({"int", "long", "double", "string", "bytes", "int128", "int256", "Bool", "true"})

_BUILTIN = re.compile(r"^(int|long|double|string|bytes|int128|int256|vector)\b[^=]*(\?|\[)")
_COMBINATOR = re.compile(
    r"^(?P<name>[\w.]+)(?:#(?P<id>[0-9a-fA-F]{1,8}))?\s*(?P<params>[^=]*?)\s*=\s*(?P<result>[^;]+);$"
)
_FLAG = re.compile(r"^(?P<word>\w+)\.(?P<bit>\d+)\?(?P<type>.+)$")
_VECTOR = re.compile(r"^(?P<kind>[Vv]ector)<(?P<item>.+)>$")


class SchemaError(LocalProtocolError):
    """A schema file is malformed (a bug in the schema, not in a peer)."""


@dataclass(frozen=True, slots=True)
class TLType:
    """A parameter type with its modifiers peeled off."""

    name: str  # "int", "DcOption", "Message", "X" ...
    bare: bool = False  # %T, or a lowercase constructor name used as a type
    vector: TLType | None = None  # set for Vector<T>/vector<T>; ``bare`` then tells which
    generic_query: bool = False  # !X

    @property
    def is_primitive(self) -> bool:
        return self.vector is None and self.name in PRIMITIVES

    def __str__(self) -> str:
        if self.vector is not None:
            return f"{'vector' if self.bare else 'Vector'}<{self.vector}>"
        if self.generic_query:
            return f"!{self.name}"
        return f"%{self.name}" if self.bare and self.name[:1].isupper() else self.name


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: TLType | None  # None for a flags word (``flags:#``)
    flag_word: str | None = None  # "flags", "flags2" when the parameter is conditional
    flag_bit: int | None = None

    @property
    def is_flags_word(self) -> bool:
        return self.type is None

    @property
    def is_flag_bit(self) -> bool:
        """``name:flags.N?true``: a boolean carried in the flags word alone."""
        return self.flag_word is not None and self.type is not None and self.type.name == "true"


@dataclass(frozen=True, slots=True)
class Combinator:
    name: str  # full name, with namespace: "help.getConfig"
    id: int
    params: tuple[Param, ...]
    result: str  # "Config", "X", "Vector<long>"
    is_function: bool
    generic: str | None = None  # "X" for {X:Type}
    explicit_id: bool = True
    line: str = field(default="", compare=False)

    @property
    def namespace(self) -> str:
        return self.name.rpartition(".")[0]

    @property
    def short_name(self) -> str:
        return self.name.rpartition(".")[2]


_NAME = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)?$")


def parse_type(text: str) -> TLType:
    if text.startswith("!"):
        return TLType(_checked_name(text[1:], text), generic_query=True)
    m = _VECTOR.match(text)
    if m:
        return TLType("vector", bare=m["kind"] == "vector", vector=parse_type(m["item"]))
    if text.startswith("%"):
        return TLType(_checked_name(text[1:], text), bare=True)
    _checked_name(text, text)
    bare = text not in PRIMITIVES and text.rpartition(".")[2][:1].islower()
    return TLType(text, bare=bare)


def _checked_name(name: str, text: str) -> str:
    if not _NAME.match(name):
        raise SchemaError(f"malformed type {text!r}")
    return name


def _parse_param(token: str) -> Param:
    name, sep, type_text = token.partition(":")
    if not sep or not name or not type_text:
        raise SchemaError(f"malformed parameter {token!r}")
    if type_text == "#":
        return Param(name, None)
    m = _FLAG.match(type_text)
    if m:
        bit = int(m["bit"])
        if bit > 31:
            raise SchemaError(f"flag bit {bit} of {token!r}: a flags word has bits 0..31")
        return Param(name, parse_type(m["type"]), m["word"], bit)
    if "?" in type_text:
        raise SchemaError(f"malformed conditional field {token!r}")
    return Param(name, parse_type(type_text))


def normalized_line(line: str) -> str:
    """The text whose CRC32 is a combinator's id (core.telegram.org/mtproto/TL-abstract-types).

    The id is dropped, a field of type ``bytes`` is spelled ``string``, conditional ``true`` bits are left out
    (they were added to the language after the ids they would change), and the brackets of generics become spaces.
    """
    text = re.sub(r"^([\w.]+)#[0-9a-fA-F]+", r"\1", line.strip().rstrip(";").strip())
    text = re.sub(r"\s\w+:\w+\.\d+\?true\b", "", text)
    # A field's own type ``bytes`` is spelled ``string`` (never a parameter *named* bytes, and not inside
    # ``Vector<bytes>``: codeSettings' official id keeps that one).
    text = re.sub(r"(?<=[:?])bytes\b", "string", text)
    text = text.replace("<", " ").replace(">", "").replace("{", "").replace("}", "")
    return " ".join(text.split())


def crc_id(line: str) -> int:
    return zlib.crc32(normalized_line(line).encode())


def parse_line(line: str, *, is_function: bool) -> Combinator | None:
    """One combinator, or None for a built-in declaration."""
    line = line.strip()
    if _BUILTIN.match(line):
        return None
    m = _COMBINATOR.match(line)
    if m is None:
        raise SchemaError(f"cannot parse TL line: {line!r}")
    generic = None
    params: list[Param] = []
    for token in m["params"].split():
        if token.startswith("{"):
            gm = re.fullmatch(r"\{(\w+):Type\}", token)
            if gm is None:
                raise SchemaError(f"unsupported generic {token!r} in {line!r}")
            generic = gm[1]
            continue
        params.append(_parse_param(token))
    names = [p.name for p in params]
    if len(set(names)) != len(names):
        raise SchemaError(f"a field name repeats in {line!r}")
    if not m["result"].strip():
        raise SchemaError(f"no result type in {line!r}")
    known_words = set()
    for p in params:
        if p.flag_word is not None and p.flag_word not in known_words:
            raise SchemaError(f"{p.name} uses flags word {p.flag_word} before it is declared in {line!r}")
        if p.is_flags_word:
            known_words.add(p.name)
    explicit = m["id"] is not None
    cid = int(m["id"], 16) if explicit else crc_id(line)
    return Combinator(
        name=m["name"],
        id=cid,
        params=tuple(params),
        result=m["result"].strip(),
        is_function=is_function,
        generic=generic,
        explicit_id=explicit,
        line=line,
    )


@dataclass(frozen=True, slots=True)
class Schema:
    combinators: tuple[Combinator, ...]
    layer: int | None = None

    @property
    def constructors(self) -> tuple[Combinator, ...]:
        return tuple(c for c in self.combinators if not c.is_function)

    @property
    def functions(self) -> tuple[Combinator, ...]:
        return tuple(c for c in self.combinators if c.is_function)

    def by_name(self, name: str) -> Combinator:
        for c in self.combinators:
            if c.name == name:
                return c
        raise KeyError(name)


def parse_schema(text: str) -> Schema:
    combinators: list[Combinator] = []
    is_function = False
    layer = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        lm = re.match(r"^//\s*LAYER\s+(\d+)", line)
        if lm:
            layer = int(lm[1])
        line = line.split("//", 1)[0].strip()
        if not line:
            continue
        if line == "---functions---":
            is_function = True
            continue
        if line == "---types---":
            is_function = False
            continue
        try:
            c = parse_line(line, is_function=is_function)
        except SchemaError as exc:
            raise SchemaError(f"line {number}: {exc}") from None
        if c is not None:
            combinators.append(c)
    seen: dict[int, str] = {}
    for c in combinators:
        if c.id in seen:
            raise SchemaError(f"constructor id 0x{c.id:08x} used by both {seen[c.id]} and {c.name}")
        seen[c.id] = c.name
    return Schema(tuple(combinators), layer)


def load_schema(path: Path) -> Schema:
    return parse_schema(path.read_text(encoding="utf-8"))
