"""Grow the pinned API subset (``schema/api.tl``) with lines of the full published schema, byte for byte.

``schema/api-full.tl`` is Telegram's whole API schema at the pinned layer, as published; ``schema/api.tl`` is the
part mtlab implements and generates code for. This tool copies combinators from the first into the second, so
no line is ever typed by hand:

    python -m mtproto.tl.subset messages.sendMessage messages.Messages updateNewMessage
    python -m mtproto.tl.subset --check     # every line of api.tl is a line of api-full.tl (a test runs this)

A name is a function (``messages.sendMessage``), a constructor (``updateNewMessage``) or a type
(``messages.Messages``: all of its constructors). What a new line needs comes with it: the result type of a
function and the type of every field that is always present, recursively, with all of the type's constructors
when it has at most ``AUTO_LIMIT`` of them. A type with more (``Update`` has well over a hundred) is not pulled
in whole: the tool stops and asks which of its constructors to add. Optional fields (``flags.N?T``) pull in
nothing; the generator types one whose type is outside the subset as any TL object.

New lines go at the end of the types or the functions section, under a comment naming the batch (``--note``);
then regenerate the code with ``python -m mtproto.tl.generator``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path

from mtproto.tl.parser import Combinator, Schema, TLType, load_schema

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
FULL = SCHEMA_DIR / "api-full.tl"
SUBSET = SCHEMA_DIR / "api.tl"

#: A required field's type is added with all its constructors when it has at most this many.
AUTO_LIMIT = 8

#: Types the runtime implements itself or that the subset's generics name.
_BUILTIN_TYPES = frozenset({"int", "long", "double", "string", "bytes", "int128", "int256", "Bool", "true", "X",
                            "Type", "Object"})


class SubsetError(ValueError):
    """A name cannot be added as asked; the message says what to do."""


def _named_types(t: TLType) -> Iterable[str]:
    if t.vector is not None:
        yield from _named_types(t.vector)
    elif t.name not in _BUILTIN_TYPES and not t.generic_query:
        yield t.name


def needs(c: Combinator) -> set[str]:
    """The type names a combinator cannot do without: required fields' types, and a function's result."""
    out: set[str] = set()
    for p in c.params:
        if p.type is not None and p.flag_word is None:
            out.update(_named_types(p.type))
    if c.is_function:
        result = c.result
        if result.startswith("Vector<"):
            result = result[len("Vector<"):-1]
        if result not in _BUILTIN_TYPES:
            out.add(result)
    return out


def closure(full: Schema, have: Schema, names: list[str]) -> list[Combinator]:
    """The combinators of ``full`` to add so that ``names`` and everything they need are in the subset."""
    present = {c.name for c in have.combinators}
    have_types = {c.result for c in have.constructors}
    by_name = {c.name: c for c in full.combinators}
    by_type: dict[str, list[Combinator]] = {}
    for c in full.constructors:
        by_type.setdefault(c.result, []).append(c)
    chosen: dict[str, Combinator] = {}
    pending_types: list[str] = []

    def take(c: Combinator) -> None:
        if c.name in present or c.name in chosen:
            return
        chosen[c.name] = c
        pending_types.extend(sorted(needs(c)))

    for name in names:
        if name in by_name:
            take(by_name[name])
        elif name in by_type:
            for c in by_type[name]:
                take(c)
        else:
            raise SubsetError(f"{name} is neither a combinator nor a type of the layer-{full.layer} schema")
    while pending_types:
        t = pending_types.pop()
        if t in have_types or any(c.result == t for c in chosen.values() if not c.is_function):
            continue
        ctors = by_type.get(t)
        if ctors is None:
            raise SubsetError(f"type {t} has no constructor in the full schema")
        if len(ctors) > AUTO_LIMIT:
            raise SubsetError(f"type {t} has {len(ctors)} constructors; name the ones the subset needs, e.g. "
                              f"{', '.join(c.name for c in ctors[:3])}")
        for c in ctors:
            take(c)
    return list(chosen.values())


def insert(text: str, added: list[Combinator], note: str) -> str:
    """``text`` (api.tl) with ``added`` appended to its types and functions sections."""
    types = [c.line for c in added if not c.is_function]
    functions = [c.line for c in added if c.is_function]
    lines = text.rstrip("\n").split("\n")
    split = lines.index("---functions---")
    end = next(i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("// LAYER"))
    head, middle, tail = lines[:split], lines[split:end], lines[end:]
    if types:
        while head and not head[-1].strip():
            head.pop()
        head += ["", f"// {note}", *types, ""]
    if functions:
        while middle and not middle[-1].strip():
            middle.pop()
        middle += ["", f"// {note}", *functions, ""]
    return "\n".join(head + middle + tail) + "\n"


def check(full: Schema, subset_text: str) -> list[str]:
    """Lines of the subset that are not lines of the full schema (empty when all are)."""
    published = {c.line for c in full.combinators}
    problems = []
    for number, raw in enumerate(subset_text.splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if not line or line.startswith("---") or line.startswith("vector#"):
            continue
        if line not in published:
            problems.append(f"api.tl:{number}: not a line of {FULL.name}: {line[:80]}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mtproto.tl.subset", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="functions, constructors or types to add")
    parser.add_argument("--check", action="store_true", help="only check that api.tl is made of published lines")
    parser.add_argument("--note", default="Added with mtproto.tl.subset", help="the comment above the new lines")
    parser.add_argument("--dry-run", action="store_true", help="print what would be added, change nothing")
    args = parser.parse_args(argv)
    full = load_schema(FULL)
    text = SUBSET.read_text(encoding="utf-8")
    if args.check:
        problems = check(full, text)
        print("\n".join(problems) if problems else f"api.tl: every line is a line of {FULL.name}")
        return 1 if problems else 0
    if not args.names:
        parser.error("name at least one function, constructor or type (or --check)")
    try:
        added = closure(full, load_schema(SUBSET), args.names)
    except SubsetError as exc:
        print(f"mtproto.tl.subset: {exc}", file=sys.stderr)
        return 2
    for c in added:
        print(f"+ {c.name}#{c.id:08x}")
    if not added:
        print("nothing to add: the subset has all of it")
    elif not args.dry_run:
        SUBSET.write_text(insert(text, added, args.note), encoding="utf-8")
        print(f"added {len(added)} lines to {SUBSET}; now run: python -m mtproto.tl.generator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
