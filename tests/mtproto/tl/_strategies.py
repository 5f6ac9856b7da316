"""Hypothesis strategies built from parsed TL schemas, one per combinator.

Nothing here is written per constructor: the strategies are derived from the ``.tl`` files, so a line added
to a schema is covered by the round-trip, truncation, bit-flip and Telethon tests without touching them.

How each TL type is drawn:
- ``int``/``long`` over their whole signed range, ``double`` any float but NaN (NaN != NaN would defeat ``==``;
  the byte-identical re-serialization check still covers the sign of zero and infinities);
- ``string`` any text without surrogates (short, and long enough to cross the 254-byte length prefix),
  ``bytes`` short, exactly 253..256 bytes (the prefix boundary) or a few KiB, ``int128``/``int256`` exact-length;
- ``flags.N?T`` absent or present, and every field on the same bit together (config's lang-pack fields);
- ``Vector<T>``/``vector<T>`` short lists, a boxed type any of its constructors, ``Object`` a simple boxed
  object, ``!X`` a function; nesting is cut off at ``max_depth`` (jsonArray in jsonArray ...).
- ``gzip_packed`` carries a real gzip stream of a simple object, so flipping its bits exercises the inflater.
"""

from __future__ import annotations

import keyword
import zlib
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st

import mtproto.tl  # noqa: F401  (importing the package registers every generated class)
from mtproto.tl.generator import BUILTIN_CONSTRUCTORS, SCHEMA_DIR, TARGETS
from mtproto.tl.parser import Combinator, Param, Schema, TLType, load_schema
from mtproto.tl.runtime import GZIP_PACKED_ID, TLObject, class_for_id

# Every schema the generator builds, so a new .tl file is covered without an edit here.
SCHEMAS: dict[str, Schema] = {t.schema: load_schema(SCHEMA_DIR / t.schema) for t in TARGETS}

#: The namespaces of internal.tl (rpc., lab., keys. ...), read from the schema so a new one needs no edit here.
INTERNAL_NAMESPACES = tuple(sorted({f"{c.namespace}." for c in SCHEMAS["internal.tl"].combinators if c.namespace}))

#: Every combinator the generator turns into a class: boolFalse/boolTrue/true are the runtime's own.
COMBINATORS: list[Combinator] = [
    c for schema in SCHEMAS.values() for c in schema.combinators if c.name not in BUILTIN_CONSTRUCTORS
]


def combinator_id(c: Combinator) -> str:
    """A readable pytest id: ``help.getConfig()`` for functions, ``config`` for constructors."""
    return f"{c.name}()" if c.is_function else c.name


def py_name(param: Param) -> str:
    """The Python attribute of a TL field: a keyword gets a trailing underscore (``from`` -> ``from_``)."""
    return param.name + "_" if keyword.iskeyword(param.name) else param.name


def cls_of(c: Combinator) -> type[TLObject]:
    cls = class_for_id(c.id)
    if cls is None:
        raise LookupError(f"no class is registered for {c.name}#{c.id:08x}")
    return cls


def _sized_binary(n: int) -> st.SearchStrategy[bytes]:
    # Hypothesis's own binary() is meant for small values; large ones come from a seeded PRNG.
    return st.randoms(use_true_random=False).map(lambda rnd: rnd.randbytes(n))


_TEXT_CHARS = st.characters(codec="utf-8")  # every code point but the surrogates UTF-8 cannot encode

PRIMITIVES: dict[str, st.SearchStrategy[Any]] = {
    "int": st.integers(-(2**31), 2**31 - 1),
    "long": st.integers(-(2**63), 2**63 - 1),
    "double": st.floats(allow_nan=False),
    "string": st.one_of(
        st.text(_TEXT_CHARS, max_size=12),
        st.text(_TEXT_CHARS, min_size=60, max_size=200),  # 60..800 UTF-8 bytes: both length prefixes
    ),
    "bytes": st.one_of(
        st.binary(max_size=16),
        st.sampled_from([253, 254, 255, 256]).flatmap(_sized_binary),
        st.integers(1000, 5000).flatmap(_sized_binary),
    ),
    "int128": st.binary(min_size=16, max_size=16),
    "int256": st.binary(min_size=32, max_size=32),
    "Bool": st.booleans(),
}


def _is_simple(t: TLType | None) -> bool:
    """A flags word, a primitive, or a vector of primitives: a value that refers to no other object."""
    if t is None:
        return True
    if t.vector is not None:
        return _is_simple(t.vector)
    return t.name in PRIMITIVES


def is_leaf(c: Combinator) -> bool:
    return all(_is_simple(p.type) for p in c.params)


class TLStrategies:
    """Strategies for the combinators of ``schemas``; ``of(c)`` draws instances of ``c``'s class."""

    def __init__(self, schemas: Iterable[Schema], *, max_depth: int = 3) -> None:
        self.max_depth = max_depth
        # Types are looked up in the schema of the combinator that names them first: mtproto.tl's bare `message`
        # (result type Message) must never stand in for the API's boxed Message, nor the API's `message` for it.
        self._by_type: dict[str, list[Combinator]] = defaultdict(list)
        self._home: dict[int, int] = {}
        self._types_in: list[dict[str, list[Combinator]]] = []
        self._names_in: list[dict[str, Combinator]] = []
        functions: list[Combinator] = []
        for index, schema in enumerate(schemas):
            types: dict[str, list[Combinator]] = defaultdict(list)
            names: dict[str, Combinator] = {}
            for c in schema.combinators:
                if c.name in BUILTIN_CONSTRUCTORS:
                    continue
                self._home[c.id] = index
                if c.is_function:
                    functions.append(c)
                else:
                    self._by_type[c.result].append(c)
                    types[c.result].append(c)
                    names[c.name] = c
            self._types_in.append(types)
            self._names_in.append(names)
        constructors = [c for cons in self._by_type.values() for c in cons]
        self.simple_objects = [c for c in constructors if is_leaf(c) and c.id != GZIP_PACKED_ID]
        # ``!X`` draws client-visible queries only: internal.tl's frames never travel inside API wrappers.
        self.functions = [c for c in functions if not c.name.startswith(INTERNAL_NAMESPACES)]
        self.simple_functions = [c for c in self.functions if is_leaf(c)]
        self._cache: dict[tuple[int, int], st.SearchStrategy[TLObject]] = {}

    def simple_object(self) -> st.SearchStrategy[TLObject]:
        """``Object``: any boxed object that refers to no other object (pong, jsonString, dcOption ...)."""
        return st.one_of(*(self.of(c) for c in self.simple_objects))  # leaves: no depth to bound

    def of(self, c: Combinator, depth: int = 0) -> st.SearchStrategy[TLObject]:
        key = (c.id, depth)
        if key not in self._cache:
            self._cache[key] = self._build(c, depth)
        return self._cache[key]

    def _build(self, c: Combinator, depth: int) -> st.SearchStrategy[TLObject]:
        if depth > self.max_depth + 8:
            raise RecursionError(f"{c.name}: the schema has no finite value below this depth")
        cls = cls_of(c)
        if c.id == GZIP_PACKED_ID:
            packed = self.simple_object().map(lambda obj: zlib.compress(obj.to_bytes(), wbits=zlib.MAX_WBITS | 16))
            return packed.map(lambda data: cls(packed_data=data))  # type: ignore[call-arg]
        required: dict[str, st.SearchStrategy[Any]] = {}
        by_bit: dict[tuple[str, int | None], list[Param]] = defaultdict(list)
        for p in c.params:
            if p.is_flags_word:
                continue
            if p.flag_word is None:
                assert p.type is not None
                required[py_name(p)] = self.value(p.type, depth + 1, self._home[c.id])
            else:
                by_bit[(p.flag_word, p.flag_bit)].append(p)
        groups = [self._flag_group(params, depth + 1, self._home[c.id]) for params in by_bit.values()]

        def build(parts: tuple[dict[str, Any], ...]) -> TLObject:
            kwargs: dict[str, Any] = {}
            for part in parts:
                kwargs.update(part)
            return cls(**kwargs)

        return st.tuples(st.fixed_dictionaries(required), *groups).map(build)

    def _flag_group(self, params: list[Param], depth: int, home: int) -> st.SearchStrategy[dict[str, Any]]:
        """The fields on one flag bit: all absent, or all present (a ``true`` field is the bit itself)."""
        absent = {py_name(p): False if p.is_flag_bit else None for p in params}
        if any(p.type is not None and self.outside_subset(p.type) for p in params):
            return st.just(absent)  # a type api.tl leaves out: the lab never sets such a field
        present = {
            py_name(p): st.just(True) if p.is_flag_bit else self.value(p.type, depth, home)  # type: ignore[arg-type]
            for p in params
        }
        return st.one_of(st.just(absent), st.fixed_dictionaries(present))

    def outside_subset(self, t: TLType) -> bool:
        """A boxed type (or vector of one) the schemas name but do not define (see the generator)."""
        inner = t.vector or t
        return (not inner.bare and not inner.generic_query and inner.name not in PRIMITIVES
                and inner.name != "Object" and not self._by_type.get(inner.name))

    def _types(self, name: str, home: int) -> list[Combinator]:
        return self._types_in[home].get(name) or self._by_type[name]

    def value(self, t: TLType, depth: int, home: int = 0) -> st.SearchStrategy[Any]:
        deep = depth >= self.max_depth
        if t.vector is not None:
            return st.just([]) if deep else st.lists(self.value(t.vector, depth, home), max_size=3)
        if t.generic_query:
            pool = self.simple_functions if deep else self.functions
            return st.one_of(*(self.of(f, depth) for f in pool))
        if t.name in PRIMITIVES:
            return PRIMITIVES[t.name]
        if t.name == "Object":
            return self.simple_object()
        if t.bare:
            return self.of(self._bare_constructor(t.name, home), depth)
        constructors = self._types(t.name, home)
        if not constructors:
            raise LookupError(f"type {t.name} has no constructor")
        if deep:
            constructors = [c for c in constructors if is_leaf(c)] or constructors
        return st.one_of(*(self.of(c, depth) for c in constructors))

    def _bare_constructor(self, name: str, home: int) -> Combinator:
        for names in (self._names_in[home], *self._names_in):
            if name in names:
                return names[name]
        (only,) = self._types(name, home)
        return only


SHIPPED = TLStrategies(SCHEMAS.values())
